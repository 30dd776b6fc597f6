"""S5.ipynb as a student runs it: opened in a real JupyterLab in headless Chromium, "Restart Kernel and Run
All Cells" twice in the same folder, watching the training bar move."""
import hashlib
import json
import os
import re
import subprocess
import sys
import time

import nbformat
import pytest

from browser import CHROMIUM
from helpers import copy_of_repository, free_port, stop

pytest.importorskip("jupyterlab", reason="JupyterLab is not installed: pip install -r requirements/dev.txt")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing: apt-get install chromium")

SHORT_RUN = {"recipe": "{\"epochs\": 1, \"batch_size\": 128}", "subset": "512"}  # four batches, so that the bar has steps


def short_notebook(path):
    """The committed notebook with the parameters of a short run and no outputs, as a student might edit it."""
    notebook = nbformat.read(str(path), as_version=4)
    cell = notebook.cells[[c.metadata.get("tags") for c in notebook.cells].index(["parameters"])]
    for name, value in SHORT_RUN.items():
        cell.source, count = re.subn(rf"^{name} = .*$", f"{name} = {value}", cell.source, flags=re.M)
        assert count == 1, name
    for code in (c for c in notebook.cells if c.cell_type == "code"):
        code.outputs, code.execution_count = [], None
    nbformat.write(notebook, str(path))


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab serving a copy of the repository on 127.0.0.1, with no token, for this test only."""
    repo = tmp_path / "repo"
    if copy_of_repository(repo) is None:
        pytest.skip("the repository is not a git checkout, so its tracked files are unknown")
    short_notebook(repo / "S5.ipynb")
    # every cell stays in the page (JupyterLab 4 otherwise detaches the cells scrolled out of view)
    settings = tmp_path / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    port = free_port()
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    env.pop("MPLBACKEND", None)  # the notebook's own %matplotlib inline draws the pictures
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         "--ServerApp.token=", "--ServerApp.password=", f"--ServerApp.root_dir={repo}",
         "--ServerApp.terminals_enabled=False", "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        yield f"http://127.0.0.1:{port}/lab/tree/S5.ipynb", repo
    finally:
        stop(server)  # a busy machine: the server may still be shutting its kernels down


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def outputs(page):
    """Each code cell's input and output text, in order."""
    return page.evaluate("""() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')].map(cell => [
        cell.querySelector('.jp-InputArea-editor')?.innerText ?? '',
        cell.querySelector('.jp-OutputArea')?.innerText ?? ''])""")


def menu(page, top, item):
    page.click(f'#jp-MainMenu li.lm-MenuBar-item:has-text("{top}")')
    page.click(f'.lm-Menu-content li.lm-Menu-item:has-text("{item}")')


def restart_and_run_all(page):
    """Runs every cell after a kernel restart; returns the training bar's percentages seen while it ran."""
    menu(page, "Edit", "Clear Outputs of All Cells")
    menu(page, "Kernel", "Restart Kernel and Run All Cells")
    page.click(".jp-Dialog button.jp-mod-accept")
    seen, deadline = [], time.monotonic() + 600  # a busy 2-core machine; the test's own timeout bounds it too
    while time.monotonic() < deadline:
        cells = outputs(page)
        training = next(out for source, out in cells if "training.batches, optimizer" in source)
        for percent in re.findall(r"(\d+)%\|", training)[-1:]:
            if not seen or seen[-1] != percent:
                seen.append(percent)
        if any("Total params: 593,200" in out for _, out in cells) and "99.4% or more in each" in cells[-1][1]:
            return seen, cells  # the summary, and the budget's verdict in the last cell
        failed = [out for _, out in cells if "Traceback" in out or re.search(r"^\w+(Error|Exception)\b", out, re.M)]
        if failed:
            pytest.fail(f"a cell failed: {failed[0][-2000:]}")
        time.sleep(0.05)
    pytest.fail(f"the notebook did not finish within 600 s; the bar showed {seen}")


@pytest.mark.server
@pytest.mark.timeout(1500)  # two Run Alls, each waiting for its state as long as a busy machine needs
def test_run_all_in_jupyterlab_shows_the_bar_moving_and_every_plot(jupyterlab):
    from playwright.sync_api import sync_playwright
    url, repo = jupyterlab
    shipped = digest(repo / "s5_net.pt")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for attempt in range(60):  # the server takes a few seconds to listen
            try:
                page.goto(url)
                break
            except Exception:
                time.sleep(0.5)
        page.wait_for_selector("#jp-main-statusbar:has-text('Idle')", timeout=60_000)
        for run in (1, 2):
            seen, cells = restart_and_run_all(page)
            partial = [p for p in seen if p != "100"]
            print(f"run {run}: the bar showed {seen}")
            assert len(partial) >= 2, f"run {run}: the bar showed {seen}"
            assert seen[-1] == "100", f"run {run}: the bar showed {seen}"
            text = "\n".join(out for _, out in cells)
            assert "Traceback" not in text, text[-3000:]
            assert not re.search(r"^\w+(Error|Exception)\b", text, re.M), text[-3000:]
            assert "Test set: Average loss" in text
            assert "1 epochs in" in text
            assert page.locator(".jp-OutputArea-output img").count() == 6  # and the feature maps and attributions
        browser.close()
    assert digest(repo / "s5_net.pt") == shipped  # Run All trains into my_s5_net.pt, never the shipped weights
    assert (repo / "my_s5_net.pt").exists()
