"""compare.py: the runs budget.py leaves, read side by side, as lines, a table, a CSV and a plot."""
import csv

import pytest
from PIL import Image

import budget
import compare
from s5 import networks
from s5.checkpoint import read_record, save_record
from s5.pictures import plot_runs
from s5.training import Recipe

pytestmark = [pytest.mark.mnist, pytest.mark.quick]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two real runs of a small network, seeds 1 and 2 of budget.py, two and three epochs on 256 images."""
    folder = tmp_path_factory.mktemp("runs")
    for seed, epochs in ((1, 2), (2, 3)):
        budget.main(["zoo:AssignmentNet", "--subset", "256", "--batch-size", "128", "--epochs", str(epochs),
                     "--last", "1", "--seeds", str(seed), "--jobs", "1", "--runs", str(folder / f"e{epochs}")])
    return [str(folder / "e2" / "zoo.AssignmentNet-seed1.pt"), str(folder / "e3" / "zoo.AssignmentNet-seed2.pt")]


@pytest.fixture
def known_run(tmp_path):
    """A run's record with a history chosen so that its best epoch is not its last, and its epochs took 10, 12
    and 14 s."""
    path = str(tmp_path / "known.pt")
    history = {"train_losses": [0.5, 0.2, 0.1], "train_acc": [90.0, 97.0, 98.0], "test_losses": [0.1, 0.05, 0.06],
               "test_acc": [97.0, 99.1, 98.9], "epoch_seconds": [10.0, 12.0, 14.0]}
    save_record(path, networks.build("zoo:AssignmentNet"), history, network="zoo:AssignmentNet",
                recipe=Recipe(epochs=3), seed=4, fast=True, precision="bf16", cuda_graph=False, train_seconds=36.0)
    return path


def test_a_runs_line_gives_its_last_and_best_epoch_and_its_mean_time(known_run, capsys):
    assert compare.main([known_run]) == 0
    parameters = read_record(known_run)["parameters"]
    assert capsys.readouterr().out.splitlines()[0] == (
        f"run 1  {known_run}: zoo:AssignmentNet, {parameters:,} parameters, seed 4, bf16, 3 epochs: last 98.90, "
        "best 99.10 (epoch 2), 12.0 s an epoch")


def test_each_run_gets_a_line_with_its_network_seed_and_last_accuracy(runs, capsys):
    assert compare.main(runs) == 0
    lines = capsys.readouterr().out.splitlines()
    for n, path in enumerate(runs, 1):
        run = read_record(path)
        line = next((line for line in lines if line.startswith(f"run {n}  {path}:")), None)
        assert line is not None, f"no line for run {n} in {lines}"
        assert f"zoo:AssignmentNet, {run['parameters']:,} parameters, seed {run['seed']}" in line, line
        assert f"{len(run['history']['test_acc'])} epochs: last {run['history']['test_acc'][-1]:.2f}" in line, line


def test_the_table_has_a_column_per_run_and_leaves_a_shorter_run_blank(runs, capsys):
    compare.main(runs)
    out = capsys.readouterr().out
    table = out[out.index("\nepoch ") + 1:].splitlines()
    first, second = (read_record(path)["history"]["test_acc"] for path in runs)
    assert table[0].split() == ["epoch", "run", "1", "run", "2"], table[0]
    assert table[2].split() == ["2", f"{first[1]:.2f}", f"{second[1]:.2f}"], f"epoch 2 reads {table[2]}"
    assert table[3].split() == ["3", f"{second[2]:.2f}"], f"epoch 3, which only run 2 has, reads {table[3]}"
    assert len(table[3]) == len(table[0]), "run 2's figure at epoch 3 stands under its column's heading"


def test_the_csv_holds_every_epoch_of_every_run_as_recorded(runs, tmp_path, capsys):
    assert compare.main([*runs, "--csv", str(tmp_path / "epochs.csv")]) == 0
    assert f"wrote {tmp_path / 'epochs.csv'}: 5 epochs of 2 runs" in capsys.readouterr().out.splitlines()
    assert b"\r" not in (tmp_path / "epochs.csv").read_bytes(), "the CSV's lines end in \\n alone"
    with open(tmp_path / "epochs.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["run", "network", "seed", "epoch", "train_losses", "train_acc", "test_losses",
                             "test_acc", "epoch_seconds"], "the CSV's heading"
    assert [(row["run"], row["epoch"]) for row in rows] == [(runs[0], "1"), (runs[0], "2"),
                                                             (runs[1], "1"), (runs[1], "2"), (runs[1], "3")]
    recorded = read_record(runs[1])["history"]["test_losses"][2]
    assert float(rows[4]["test_losses"]) == recorded, "the CSV's test loss differs from the record's"


def test_the_plot_draws_each_runs_test_accuracy_by_epoch(runs):
    histories = {path: read_record(path)["history"] for path in runs}
    lines = plot_runs(histories).axes[0].get_lines()
    assert [list(line.get_xdata()) for line in lines] == [[1, 2], [1, 2, 3]], "the epochs on the x axis"
    assert [list(line.get_ydata()) for line in lines] == [h["test_acc"] for h in histories.values()], "the accuracies"


def test_the_plot_says_what_it_shows(known_run):
    ax = plot_runs({"run 1: zoo:AssignmentNet, seed 4": read_record(known_run)["history"]}).axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("epoch", "test accuracy (%)"), "the axes' labels"
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["run 1: zoo:AssignmentNet, seed 4"]
    assert all(tick == int(tick) for tick in ax.get_xticks()), f"epochs are whole: {ax.get_xticks()}"


def test_the_plot_option_writes_a_png_and_names_each_run_by_its_number(runs, tmp_path, capsys, monkeypatch):
    drawn = {}
    monkeypatch.setattr("s5.pictures.plot_runs", lambda histories: drawn.update(histories) or plot_runs(histories))
    assert compare.main([*runs, "--plot", str(tmp_path / "runs.png")]) == 0
    assert f"wrote {tmp_path / 'runs.png'}" in capsys.readouterr().out.splitlines()
    assert list(drawn) == ["run 1: zoo:AssignmentNet, seed 1", "run 2: zoo:AssignmentNet, seed 2"], list(drawn)
    assert Image.open(tmp_path / "runs.png").format == "PNG"


def test_a_file_that_is_no_run_is_refused_in_one_sentence_and_nothing_is_written(runs, tmp_path, capsys):
    (tmp_path / "notes.pt").write_text("not a run")
    assert compare.main([runs[0], str(tmp_path / "notes.pt"), "--csv", str(tmp_path / "epochs.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("compare.py: ") and "notes.pt" in err and "\n" not in err, err
    assert not (tmp_path / "epochs.csv").exists(), "a CSV was written for a refused command"


@pytest.mark.parametrize("option", ["--csv", "--plot"])
@pytest.mark.parametrize("where", ["a missing folder", "a folder"])
def test_an_output_that_cannot_be_a_file_is_refused_in_one_sentence(runs, tmp_path, capsys, option, where):
    output = tmp_path / "no" / "out" if where == "a missing folder" else tmp_path
    assert compare.main([*runs, option, str(output)]) == 2, f"{option} {where}"
    assert capsys.readouterr().err.strip() == (f"compare.py: {output} is a folder or lies in a folder that does not "
                                               f"exist: name a file in an existing folder with {option}")
