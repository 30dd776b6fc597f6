import dataclasses
import os
import re
import subprocess
import sys

import nbformat
import papermill
import pytest

from s5.checkpoint import read_record
from s5.training import Recipe
from helpers import DATA_DIR, ROOT
from notebooks import BAR, FINAL, check_executed, outputs_of, outputs_text

NOTEBOOK = os.path.join(ROOT, "S5.ipynb")
ORIGINAL_CELLS = os.path.join(ROOT, "tests", "original_cells.md")


def original_cells():
    """The code cells of the original notebook, verbatim."""
    with open(ORIGINAL_CELLS) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


@pytest.mark.mnist
@pytest.mark.quick
def test_the_original_notebook_cells_run_against_the_modules(tmp_path):
    cells = original_cells()
    assert len(cells) == 10
    script = []
    for cell in cells:
        # the only edit to the original's code: torch 2.14 no longer takes StepLR(verbose=...)
        cell = cell.replace(", verbose=True", "").replace("num_epochs = 20", "num_epochs = 1")
        script.append(cell)
        if "datasets.MNIST(" in cell:  # a small real subset, so that one epoch takes seconds
            script.append("train_data = torch.utils.data.Subset(train_data, range(1024))\n"
                          "test_data = torch.utils.data.Subset(test_data, range(512))\n")
    script.append("print('summary returned', get_summary(Net))\nprint('train_acc', train_acc)\n")
    work = tmp_path / "work"
    work.mkdir()
    os.symlink(DATA_DIR, tmp_path / "data")  # the original reads '../data'
    (work / "seed_notebook.py").write_text("\n".join(script))
    run = subprocess.run([sys.executable, "seed_notebook.py"], cwd=work, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": ROOT, "MPLBACKEND": "Agg"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Epoch 1" in run.stdout
    assert re.search(r"Test set: Average loss: \d\.\d{4}, Accuracy: \d+/512 \(\d+\.\d\d%\)", run.stdout)
    assert "Total params: 593,200" in run.stdout
    assert "summary returned 593200" in run.stdout
    assert "Train: Loss=" in run.stderr
    assert "Batch_id=1 " in run.stderr


@pytest.mark.mnist
def test_the_fast_path_notebook_runs_headless(tmp_path):
    weights = tmp_path / "weights.pt"
    papermill.execute_notebook(NOTEBOOK, str(tmp_path / "out.ipynb"), cwd=ROOT, progress_bar=False,
                               parameters={"recipe": {"epochs": 2}, "subset": 1024, "fast": True,
                                           "weights_path": str(weights)})
    executed = nbformat.read(str(tmp_path / "out.ipynb"), as_version=4)
    epochs, accuracy = check_executed(executed, fast=True, epochs=2)
    state = read_record(weights)
    assert epochs == "2"
    assert state["epoch"] == 2
    assert f"{state['test_accuracy']:.2f}" == accuracy
    assert len(state["history"]["test_acc"]) == 2
    assert len(state["history"]["epoch_seconds"]) == 2


def test_a_weights_path_that_is_a_folder_stops_the_notebook_before_any_training(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError) as stopped:
        papermill.execute_notebook(NOTEBOOK, str(tmp_path / "out.ipynb"), cwd=ROOT, progress_bar=False,
                                   parameters={"weights_path": str(tmp_path), "subset": 512, "fast": True})
    assert (stopped.value.ename, stopped.value.evalue) == (
        "ValueError", f"{tmp_path} is a folder or lies in a folder that does not exist: name a file in an existing "
                      "folder as weights_path"), "the one sentence"
    executed = nbformat.read(str(tmp_path / "out.ipynb"), as_version=4)
    assert "Train: Loss" not in outputs_text(executed), "it stopped before training"


@pytest.fixture(scope="module")
def own_network_run(tmp_path_factory):
    """`papermill -p` as a student types it, from a folder of their own: their network, and the recipe's changes as
    the text -p passes; what the terminal showed, the executed notebook and the folder."""
    folder = tmp_path_factory.mktemp("own")
    run = subprocess.run([sys.executable, "-m", "papermill", NOTEBOOK, "out.ipynb", "-p", "network", "small:SeparableNet",
                          "-p", "recipe", '{"epochs": 1}', "-p", "subset", "512", "-p", "fast", "True"],
                         cwd=folder, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert run.returncode == 0, run.stderr[-3000:]
    return run, nbformat.read(str(folder / "out.ipynb"), as_version=4), folder


@pytest.mark.mnist
def test_a_recipes_changes_given_with_papermill_p_as_text_are_taken(own_network_run):
    _, _, folder = own_network_run
    assert read_record(folder / "small.SeparableNet.pt")["epoch"] == 1, "the one epoch asked for"


@pytest.mark.mnist
def test_the_notebook_trains_a_network_with_the_recipe_it_carries(own_network_run):
    from small import SeparableNet
    _, _, folder = own_network_run
    recorded = read_record(folder / "small.SeparableNet.pt")["recipe"]
    assert recorded == dataclasses.asdict(Recipe(**{**SeparableNet.recipe, "epochs": 1})), "its own, epochs changed"


@pytest.mark.mnist
def test_the_notebooks_weights_are_named_after_the_network(own_network_run):
    _, _, folder = own_network_run
    assert sorted(path.name for path in folder.iterdir()) == ["out.ipynb", "small.SeparableNet.pt"]


@pytest.mark.mnist
def test_a_headless_run_says_its_outcome_in_one_line_on_the_terminal(own_network_run):
    run, _, folder = own_network_run
    record = read_record(folder / "small.SeparableNet.pt")
    lines = [line for line in run.stderr.splitlines() if line.startswith("S5.ipynb: ")]  # beside papermill's bar
    assert len(lines) == 1, run.stderr[-2000:]
    line = lines[0]
    assert line.startswith(f"S5.ipynb: small:SeparableNet, 1 epoch on the fast path ({record['precision']}) in "), line
    assert line.endswith(f" s: test accuracy {record['test_accuracy']:.2f}%; the budget falls short; the weights are "
                         "in small.SeparableNet.pt"), line


def test_committed_notebook_carries_a_full_run_above_99_2():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    # no papermill-injected parameters: a student's Run All must train into my_s5_net.pt, not the shipped weights
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in code)
    assert all(c.execution_count for c in code[1:]), "every cell ran"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    text = outputs_text(notebook)
    epochs, accuracy = FINAL.search(text).groups()
    assert epochs == "20"
    assert float(accuracy) >= 99.2
    assert "fast path: False" in text  # the faithful original pipeline
    assert os.path.getsize(NOTEBOOK) < 600_000  # one final progress line per epoch, not every refresh
    assert not any("\r" in o["text"] for o in outputs_of(notebook, "stderr"))
    assert len(BAR.findall("".join(o["text"] for o in outputs_of(notebook, "stderr")))) == 20
    assert len(re.findall(r"Test set: Average loss: \d\.\d{4}, Accuracy: \d+/10000", text)) == 20
