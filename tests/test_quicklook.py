"""quicklook.py, the README's first command: the notebook for one epoch of the fast path, ending in one line."""
import os
import re
import shutil
import subprocess
import sys

import nbformat
import pytest

import quicklook
from s5.checkpoint import read_record
from helpers import ROOT, copy_of_repository, digest
from notebooks import check_executed

QUICK_LOOK = re.compile(r"^Quick look: 1 epoch of model:Net on the fast path \((bf16|fp32)\) trained in \d+ s; test accuracy "
                        r"(\d+\.\d\d)% \(as expected\)\. The log and the plots: S5\.out\.ipynb; the weights: my_s5_net\.pt$")


@pytest.mark.mnist
@pytest.mark.timeout(900)  # a whole epoch: about 150 s of training on a 2-core AVX2 CPU
def test_the_readme_quick_look_learns_and_changes_no_tracked_file(tmp_path):
    """The README's first command, `python quicklook.py`, in a copy of the repository, with a headless matplotlib."""
    copy = tmp_path / "repo"
    names = copy_of_repository(copy)
    if names is None:
        pytest.skip("the repository is not a git checkout, so its tracked files are unknown")
    before = {name: digest(copy / name) for name in names}
    run = subprocess.run([sys.executable, "quicklook.py"], cwd=copy, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "MPLBACKEND": "Agg"})
    assert run.returncode == 0, run.stderr[-3000:]
    closing = run.stdout.strip().splitlines()[-1]
    match = QUICK_LOOK.match(closing)
    assert match, closing
    assert float(match.group(2)) >= 90.0  # the README's promise; the original's first epoch reached 92.13%
    assert {name: digest(copy / name) for name in before} == before  # s5_net.pt and S5.ipynb untouched
    executed = nbformat.read(str(copy / "S5.out.ipynb"), as_version=4)
    epochs, accuracy = check_executed(executed, fast=True, epochs=1)
    state = read_record(copy / "my_s5_net.pt")
    assert epochs == "1"
    assert state["epoch"] == 1
    assert f"{state['test_accuracy']:.2f}" == match.group(2) == accuracy
    assert len(state["history"]["test_acc"]) == 1


def test_the_quick_look_offline_without_data_says_what_to_do_in_one_sentence(tmp_path):
    copy = tmp_path / "repo"
    if copy_of_repository(copy) is None:
        pytest.skip("the repository is not a git checkout, so its tracked files are unknown")
    closed = "http://127.0.0.1:9"  # a proxy on a closed local port: every download fails at once, as offline
    env = {**os.environ, "MNIST_DATA_DIR": str(tmp_path / "data"), "http_proxy": closed, "https_proxy": closed,
           "HTTP_PROXY": closed, "HTTPS_PROXY": closed, "no_proxy": "", "NO_PROXY": ""}
    run = subprocess.run([sys.executable, "quicklook.py"], cwd=copy, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 1
    error = run.stderr.strip()
    assert len(error.splitlines()) == 1, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert error.startswith(f"quicklook.py: MNIST is not in {tmp_path / 'data' / 'MNIST' / 'raw'} and could not be "
                            "downloaded (")
    assert "change MNIST_DATA_DIR to the absolute path of a folder that holds them in MNIST/raw/" in error
    assert not (copy / "my_s5_net.pt").exists()


@pytest.mark.quick
def test_the_closing_line_says_the_precision_the_time_the_accuracy_and_the_verdict():
    record = {"precision": "bf16", "train_seconds": 21.6, "test_accuracy": 94.386, "network": "model:Net"}
    assert quicklook.closing_line(record) == ("Quick look: 1 epoch of model:Net on the fast path (bf16) trained in 22 s; "
                                              "test accuracy 94.39% (as expected). The log and the plots: S5.out.ipynb; the weights: "
                                              "my_s5_net.pt")
    assert QUICK_LOOK.match(quicklook.closing_line(record))
    low = quicklook.closing_line({**record, "test_accuracy": 89.994, "precision": "fp32"})
    assert low.endswith("test accuracy 89.99% (below the expected 90%). The log and the plots: S5.out.ipynb; the "
                        "weights: my_s5_net.pt")
    assert "(as expected)" in quicklook.closing_line({**record, "test_accuracy": 90.0})
    assert not quicklook.meets_expectation({**record, "test_accuracy": 89.994})
    # another network's first epoch has no known floor: the line names none, and the command does not fail
    own = {**record, "network": "small:SmallNet", "test_accuracy": 60.67}
    assert quicklook.closing_line(own) == ("Quick look: 1 epoch of small:SmallNet on the fast path (bf16) trained in "
                                           "22 s; test accuracy 60.67%. The log and the plots: S5.out.ipynb; the "
                                           "weights: small.SmallNet.pt")
    assert quicklook.meets_expectation(own)


@pytest.mark.quick
@pytest.mark.parametrize("network, accuracy, code", [("model:Net", 89.99, 1), ("model:Net", 90.0, 0), ("model:Net", 94.39, 0),
                                                     ("zoo:AssignmentNet", 60.0, 0)])
def test_the_exit_status_follows_the_verdict(tmp_path, monkeypatch, capsys, network, accuracy, code):
    """The run's record as the notebook leaves it, with the accuracy given; Net's first epoch below 90% fails the
    command, another network's has no floor to fail."""
    from s5 import networks
    from s5.checkpoint import save_record
    from s5.training import Recipe

    def run(parameters):  # what the notebook leaves behind, written where the command reads it
        save_record(os.path.join(tmp_path, parameters["weights_path"]), networks.build(network),
                    {"test_acc": [accuracy]}, network=network, recipe=Recipe(epochs=1), seed=1, fast=True,
                    precision="fp32", cuda_graph=False, train_seconds=1.0)
    monkeypatch.setattr(quicklook, "run_notebook", run)
    monkeypatch.setattr(quicklook, "HERE", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))  # main adds its folder; put back after
    assert quicklook.main(["--network", network]) == code
    assert f"test accuracy {accuracy:.2f}%" in capsys.readouterr().out


@pytest.mark.quick
def test_a_network_that_cannot_be_built_is_refused_in_one_sentence_with_exit_2(monkeypatch, capsys):
    monkeypatch.setattr(quicklook, "run_notebook", lambda parameters: pytest.fail("the notebook started"))
    assert quicklook.main(["--network", "my_s7.py:Net7"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("quicklook.py: ") and "my_s7.py:Net7" in err and "\n" not in err, err


@pytest.mark.quick
def test_the_quick_look_asks_the_notebook_for_one_epoch_of_the_network_named(monkeypatch):
    """The notebook trains it with the recipe it carries (tests/test_notebook.py shows that)."""
    asked = {}
    monkeypatch.setattr(quicklook, "run_notebook", lambda parameters: asked.update(parameters) or "stopped here")
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))  # main adds its folder; put back after
    assert quicklook.main(["--network", "small:SeparableNet"]) == 1
    assert (asked["network"], asked["recipe"]) == ("small:SeparableNet", {"epochs": 1}), "one epoch of it"
    assert asked["weights_path"] == "small.SeparableNet.pt", "the weights named after it"
    assert asked["fast"] is True, "on the fast path"


@pytest.mark.quick
def test_the_notebooks_kernel_finds_a_network_in_the_folder_the_command_runs_from(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(quicklook, "run_notebook", lambda parameters: seen.append(os.environ["PYTHONPATH"]) or "stop")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    monkeypatch.chdir(tmp_path)
    quicklook.main(["--network", "small:SeparableNet"])
    assert seen == [os.pathsep.join([str(tmp_path), "/elsewhere"])], "this folder first, the PYTHONPATH given kept"


@pytest.mark.quick
def test_it_says_it_has_started_then_a_notebook_that_stops_in_one_line_on_stderr_with_exit_1(monkeypatch, capsys):
    monkeypatch.setattr(quicklook, "run_notebook", lambda parameters: "MNIST is not in /nowhere; set MNIST_DATA_DIR")
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))  # main adds its folder; put back after
    assert quicklook.main([]) == 1, "a run that stopped is a failure"
    out, err = capsys.readouterr()
    assert out.startswith("Training 1 epoch of S5.ipynb with the fast path"), f"no word that it started: {out!r}"
    assert err == "quicklook.py: MNIST is not in /nowhere; set MNIST_DATA_DIR\n", f"not the one line: {err!r}"


@pytest.fixture
def notebook_folder(tmp_path, monkeypatch):
    """A folder holding the notebook, where run_notebook executes it, its kernel finding the repository; the
    command runs from another folder."""
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir(), elsewhere.mkdir()
    shutil.copy(os.path.join(ROOT, quicklook.NOTEBOOK), here)
    monkeypatch.setattr(quicklook, "HERE", str(here))
    monkeypatch.setenv("PYTHONPATH", ROOT)
    monkeypatch.chdir(elsewhere)
    return here


def test_a_notebook_error_that_says_what_to_do_is_passed_on_as_it_is(notebook_folder):
    error = quicklook.run_notebook({"network": "nosuch:Net", "recipe": {"epochs": 1}, "weights_path": "x.pt"})
    assert error == ("No module 'nosuch' for the network nosuch:Net: put nosuch.py in the folder you run from, "
                     "or name another module:Class"), error


def test_no_mnist_and_no_way_to_download_it_is_passed_on_as_the_data_says_it(notebook_folder, tmp_path, monkeypatch):
    closed = "http://127.0.0.1:9"  # a proxy on a closed local port: every download fails at once, as offline
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, closed)
    monkeypatch.setenv("MNIST_DATA_DIR", str(tmp_path / "data"))
    error = quicklook.run_notebook({"network": "model:Net", "recipe": {"epochs": 1}, "weights_path": "x.pt"})
    assert error.startswith(f"MNIST is not in {tmp_path / 'data' / 'MNIST' / 'raw'} and could not be downloaded"), error


def test_any_other_notebook_error_is_named_with_its_kind_and_the_executed_copy_that_shows_the_cell(notebook_folder):
    """The weights' folder exists only beside the notebook: the kernel runs there, so the error is the recipe's."""
    (notebook_folder / "runs").mkdir()
    error = quicklook.run_notebook({"network": "model:Net", "recipe": {"epochs": 0}, "weights_path": "runs/x.pt"})
    assert error == "ValueError: The recipe's epochs must be above 0, not 0 (the cell that failed is in S5.out.ipynb)"
    assert (notebook_folder / "S5.out.ipynb").exists(), "the executed copy it points to"
