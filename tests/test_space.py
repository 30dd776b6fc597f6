"""The demo as a Hugging Face Space starts it: laid out by space/build.sh, installed into a fresh virtual
environment from the Space's own requirements.txt alone, started as `python app.py` with GRADIO_SERVER_NAME=0.0.0.0."""
import os
import re
import subprocess
import sys

import pytest

from helpers import ROOT, free_port, wait_for_port
from inputs import user_image

@pytest.mark.quick
def test_the_space_settings_name_the_gradio_it_requires():
    with open(os.path.join(ROOT, "space", "README.md")) as f:
        front_matter = f.read().split("---")[1]
    settings = dict(re.findall(r"^(\w+): *\"?([^\"\n]*)\"?$", front_matter, re.M))
    assert settings["sdk"] == "gradio"
    assert settings["app_file"] == "app.py"
    assert settings["python_version"] == "3.11"
    with open(os.path.join(ROOT, "space", "requirements.txt")) as f:
        assert f"gradio=={settings['sdk_version']}" in f.read().split()


@pytest.mark.quick
def test_the_build_script_names_its_destination():
    run = subprocess.run(["bash", os.path.join(ROOT, "space", "build.sh")], capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.startswith("usage: bash space/build.sh DEST")


def test_the_build_script_run_twice_into_one_folder_gives_the_same_files_and_imports_what_app_needs(tmp_path):
    """Into a clone of the Space's repository, as each update is built: the second run replaces, nests nothing,
    and the folder holds every module app.py imports from this repository."""
    pytest.importorskip("gradio", reason="the demo's packages are not installed: pip install -r requirements/app.txt")
    space = tmp_path / "space"
    for _ in range(2):
        subprocess.run(["bash", os.path.join(ROOT, "space", "build.sh"), str(space)], check=True, capture_output=True)
        files = sorted(str(path.relative_to(space)) for path in space.rglob("*") if path.is_file())
    copied = [name for name in files if name not in ("README.md", "requirements.txt")]
    assert all(open(space / name, "rb").read() == open(os.path.join(ROOT, name), "rb").read() for name in copied), \
        "each file as the repository has it"
    imported = subprocess.run([sys.executable, "-c", "import os, sys, app; print(' '.join(sorted(os.path.relpath("
                               "m.__file__) for m in sys.modules.values() if (getattr(m, '__file__', None) or '/')"
                               ".startswith(os.getcwd() + os.sep))))"],
                              cwd=space, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    assert imported.returncode == 0, imported.stderr[-2000:]
    assert set(imported.stdout.split()) <= set(files), "every module app.py imports from the repository is there"


def listening_addresses(pid):
    psutil = pytest.importorskip("psutil")
    return {c.laddr.ip for c in psutil.Process(pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}


@pytest.mark.server
@pytest.mark.timeout(1500)  # pip installs torch, torchvision and gradio into the fresh environment
def test_the_space_starts_from_its_own_requirements_and_answers(tmp_path, mnist_test):
    gradio_client = pytest.importorskip("gradio_client")
    space = tmp_path / "space"
    subprocess.run(["bash", os.path.join(ROOT, "space", "build.sh"), str(space)], check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    install = subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r",
                              str(space / "requirements.txt")], capture_output=True, text=True, timeout=1200)
    assert install.returncode == 0, install.stderr[-3000:]
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    server = subprocess.Popen([python, "app.py"], cwd=space, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**env, "GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": str(port)})
    try:
        first_line = server.stdout.readline()
        assert first_line.strip() == f"S5 digit demo on http://0.0.0.0:{port} (Ctrl+C stops it)", first_line
        wait_for_port(port, server, 180)  # a busy 2-core machine imports torch and gradio slowly
        assert listening_addresses(server.pid) == {"0.0.0.0"}
        digit = tmp_path / "digit.png"
        user_image(mnist_test.data[0], __import__("numpy").random.default_rng(1), 120, "L").save(digit)  # a 7
        client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
        label, _ = client.predict(gradio_client.handle_file(str(digit)), api_name="/predict")
        assert label["label"] == "7"
    finally:
        server.terminate()
        server.wait(timeout=30)
