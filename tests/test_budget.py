"""budget.py: the verdict says no where a line misses, the exit status follows it, bad input is one sentence, and
Ctrl-C keeps the table of what finished. Real networks, real MNIST (a subset), the real fast path."""
import pytest
import torch

import budget
from model import Net
from small import SeparableNet, SmallNet
from s5.budget import Budget, default_jobs, verdict
from s5.training import Recipe
from zoo import AssignmentNet

pytestmark = pytest.mark.quick

TINY = ["--subset", "256", "--batch-size", "128", "--epochs", "2", "--seeds", "1", "--last", "2"]


@pytest.fixture(autouse=True)
def in_a_fresh_folder(tmp_path, monkeypatch):
    """budget.py writes its runs into runs/ of the folder it runs from: here, a fresh one."""
    monkeypatch.chdir(tmp_path)


class InterruptedNet(AssignmentNet):
    """Stops training the way a person does, with Ctrl-C: at the first training batch of the third epoch (two
    batches an epoch on TINY's subset), so that two epochs finished."""

    def forward(self, x):
        if self.training:
            self.batches = getattr(self, "batches", 0) + 1
            if self.batches == 5:
                raise KeyboardInterrupt
        return super().forward(x)


def run(epochs, accuracies, seed=1):
    return {"seed": seed, "test_acc": accuracies, "epoch_seconds": [1.0] * len(accuracies), "epochs": epochs}


def verdicts(lines):
    return {what: holds for what, _, holds in lines}


def test_every_line_holds_only_when_the_network_the_epochs_and_every_seed_do():
    limits = Budget(parameters=20000, epochs=3, target=99.0, last=2, seeds=2)
    small = AssignmentNet()
    lines, ok = verdict(small, "zoo:AssignmentNet", Recipe(epochs=3), limits,
                        [run(3, [98.0, 99.1, 99.2]), run(3, [98.5, 99.0, 99.3], seed=2)])
    assert ok
    assert verdicts(lines)["parameters"] == "holds"
    assert verdicts(lines)["seed 2"] == "holds"
    assert dict((w, v) for w, v, _ in lines)["seed 1"].startswith("last 2: 99.10 99.20; best 99.20 (epoch 3)")
    # one epoch of one seed below the target, although its best is above: that seed, and the whole, fall short
    lines, ok = verdict(small, "zoo:AssignmentNet", Recipe(epochs=3), limits,
                        [run(3, [98.0, 99.5, 98.9]), run(3, [98.5, 99.0, 99.3], seed=2)])
    assert not ok
    assert verdicts(lines)["seed 1"] == "falls short"
    assert verdicts(lines)["seed 2"] == "holds"


def test_net_falls_short_on_parameters_and_a_long_recipe_on_epochs():
    lines, ok = verdict(Net(), "model:Net", Recipe(epochs=20), Budget(seeds=1), [run(20, [99.5] * 20)])
    assert not ok
    assert verdicts(lines)["parameters"] == "falls short"
    assert verdicts(lines)["epochs"] == "falls short"
    assert verdicts(lines)["seed 1"] == "holds"
    assert "batch norm: no, dropout: no, GAP: no, linear layer: yes" in dict((w, v) for w, v, _ in lines)["uses"]
    assert "14x14 at its last convolution, conv4" in dict((w, v) for w, v, _ in lines)["receptive field"]


@pytest.mark.parametrize("network", [SmallNet, SeparableNet])
def test_the_shipped_small_networks_fit_under_4000_parameters_with_what_the_assignment_asks_for(network):
    lines, _ = verdict(network(), f"small:{network.__name__}", Recipe(epochs=15), Budget(parameters=4000, seeds=1),
                       [run(15, [99.5] * 15)])
    assert verdicts(lines)["parameters"] == "holds"
    assert "batch norm: yes, dropout: yes, GAP: yes, linear layer: no" in dict((w, v) for w, v, _ in lines)["uses"]
    assert network()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_an_unfinished_run_and_missing_seeds_fall_short():
    limits = Budget(parameters=20000, epochs=3, target=90.0, last=1, seeds=3)
    lines, ok = verdict(AssignmentNet(), "zoo:AssignmentNet", Recipe(epochs=3), limits,
                        [run(3, [95.0, 96.0, 97.0]), run(3, [95.0], seed=2)])
    assert not ok
    assert verdicts(lines)["seed 2"] == "falls short"
    assert verdicts(lines)["seeds"] == "falls short"
    assert "stopped after 1 of 3 epochs" in dict((w, v) for w, v, _ in lines)["seed 2"]


@pytest.mark.parametrize("figure", [0, -1, "8000", True])
def test_a_budget_that_is_not_a_number_above_zero_is_refused(figure):
    with pytest.raises(ValueError, match="must be a number above 0"):
        Budget(parameters=figure)


@pytest.mark.mnist
def test_the_command_exits_0_when_every_line_holds_and_1_when_the_accuracy_misses(capsys):
    assert budget.main(["zoo:AssignmentNet", *TINY, "--parameters", "20000", "--target", "1"]) == 0
    out = capsys.readouterr().out
    assert "seed 1, epoch 2/2: test accuracy" in out
    assert "falls short" not in out
    assert budget.main(["zoo:AssignmentNet", *TINY, "--parameters", "20000", "--target", "99.99"]) == 1
    table = capsys.readouterr().out.splitlines()
    assert [line.split()[:4] for line in table if line.startswith("seed 1 ")] == [["seed", "1", "falls", "short"]]


@pytest.mark.mnist
def test_the_epoch_budget_is_its_own_figure_not_the_recipes_epochs(capsys):
    # a recipe of 2 epochs against a budget of 1: the recipe's --epochs must not set the budget's --max-epochs
    argv = ["zoo:AssignmentNet", *TINY, "--parameters", "20000", "--target", "1", "--max-epochs", "1"]
    assert budget.main(argv) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1:] for line in lines if line.startswith("epochs ")] == [
        ["falls", "short", "2", "(budget:", "at", "most", "1)"]]


@pytest.mark.parametrize("argv, sentence", [
    (["inputs:png_header_only"], "inputs:png_header_only is not a torch.nn.Module class (function)"),
    (["torch.nn:Identity"], "gives (2, 1, 28, 28) for a batch of 2 digits: a digit classifier must give 10 scores"),
    (["zoo:AssignmentNet", "--last", "0"], "The budget's last must be a number above 0, not 0"),
    (["zoo:AssignmentNet", "--epochs", "2"], "2 epochs cannot show 3 last epochs: train at least 3 (--epochs), or "
                                             "read fewer (--last 2)"),
])
def test_bad_input_gets_one_sentence_and_exit_2(argv, sentence, capsys):
    assert budget.main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1, error
    assert error.startswith("budget.py: "), error
    assert sentence in error, error


def test_a_budget_number_that_is_not_a_number_names_its_option(capsys):
    with pytest.raises(SystemExit) as stopped:
        budget.main(["zoo:AssignmentNet", "--target", "high"])
    assert stopped.value.code == 2
    assert "'high' is not a number: give --target as one, such as 99.4" in capsys.readouterr().err


@pytest.mark.mnist
def test_ctrl_c_stops_with_the_table_of_what_finished(capsys):
    torch.manual_seed(0)
    code = budget.main(["test_budget:InterruptedNet", *TINY, "--epochs", "3", "--parameters", "20000"])
    out = capsys.readouterr().out
    assert code == 130
    assert "stopped (Ctrl-C): the table of what finished" in out
    seed = next(line for line in out.splitlines() if line.startswith("seed 1 "))
    assert "falls short" in seed
    assert "stopped after 2 of 3 epochs" in seed


@pytest.mark.quick
@pytest.mark.parametrize("argv", [[], ["small:SmallNet", "--network", "small:SeparableNet"]], ids=["none", "two"])
def test_budget_wants_exactly_one_network(argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        budget.main([*argv, "--seeds", "0"])
    assert stopped.value.code == 2
    assert "name one network, as module:Class" in capsys.readouterr().err


@pytest.mark.quick
def test_budget_takes_the_network_as_every_command_does_with_network(capsys):
    """--network, as in every command, or alone as the first argument; a bad budget then stops both alike."""
    for argv in (["--network", "zoo:AssignmentNet"], ["zoo:AssignmentNet"]):
        assert budget.main([*argv, "--seeds", "0"]) == 2, argv
        assert "The budget's seeds must be a number above 0, not 0" in capsys.readouterr().err, argv


@pytest.mark.mnist
def test_each_seed_keeps_its_run_named_after_the_network_and_the_seed(tmp_path, capsys):
    from s5.checkpoint import read_record
    assert budget.main(["zoo:AssignmentNet", *TINY, "--seeds", "2", "--parameters", "20000", "--target", "1",
                        "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    for seed in (1, 2):
        path = tmp_path / "runs" / f"zoo.AssignmentNet-seed{seed}.pt"
        assert f"seed {seed}: its run is in {path.relative_to(tmp_path)}" in out, f"seed {seed}'s line"
        record = read_record(str(path))
        assert (record["network"], record["seed"]) == ("zoo:AssignmentNet", seed), "the network and the seed"
        assert len(record["history"]["test_acc"]) == 2, "both epochs' accuracies"
        assert record["budget"]["holds"] is True, "the seed's verdict"
        assert record["machine"], "the machine it ran on"


@pytest.mark.mnist
def test_a_seed_that_falls_short_keeps_that_verdict_in_its_run(tmp_path):
    from s5.checkpoint import read_record
    assert budget.main(["zoo:AssignmentNet", *TINY, "--parameters", "20000", "--target", "99.99"]) == 1
    assert read_record(str(tmp_path / "runs" / "zoo.AssignmentNet-seed1.pt"))["budget"]["holds"] is False


def test_a_runs_folder_that_cannot_hold_them_is_refused_before_any_training(tmp_path, capsys):
    (tmp_path / "taken").write_text("a file, not a folder")
    assert budget.main(["zoo:AssignmentNet", *TINY, "--runs", str(tmp_path / "taken")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"budget.py: the runs cannot go to {tmp_path / 'taken'} ("), error
    assert error.endswith("): name a folder that can hold them with --runs"), error


def test_a_network_carries_its_recipe_and_the_options_change_it():
    assert Recipe.of(SeparableNet) == Recipe(epochs=15, batch_size=128, lr=0.6, scheduler="onecycle", rotation=7)
    assert Recipe.of(Net) == Recipe(), "a network without one gets the original's"
    assert Recipe.of(Net, Recipe(epochs=15)) == Recipe(epochs=15), "or the command's fallback"


def test_a_recipe_with_a_field_recipes_do_not_have_is_refused_in_one_sentence():
    class Typo(Net):
        recipe = {"learning_rate": 0.1}
    with pytest.raises(ValueError, match="^The Typo.recipe has no learning_rate: change epochs, "):
        Recipe.of(Typo)


@pytest.mark.mnist
def test_budget_trains_with_the_networks_recipe_changed_by_the_options_given(capsys):
    assert budget.main(["small:SeparableNet", *TINY, "--target", "1"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("recipe "))
    for field in ("epochs=2", "batch_size=128", "lr=0.6", "scheduler=onecycle", "rotation=7"):
        assert field in line, f"{field} (the options' epochs and batch size, the rest the network's): {line}"


def test_the_table_says_how_many_seeds_hold_and_the_spread_of_their_last_epochs():
    """Each seed's lowest accuracy over its last epochs, 99.10, 99.00 and 99.40 here: their lowest and median."""
    limits = Budget(parameters=20000, epochs=3, target=99.05, last=2, seeds=3)
    lines, _ = verdict(AssignmentNet(), "zoo:AssignmentNet", Recipe(epochs=3), limits,
                       [run(3, [98.0, 99.1, 99.2]), run(3, [98.5, 99.0, 99.3], seed=2), run(3, [99, 99.4, 99.5], seed=3)])
    facts = {what: value for what, value, _ in lines}
    assert facts["seeds hold"] == "2 of 3; the lowest of each one's last 2: lowest 99.00, median 99.10"


def test_a_seed_stopped_early_is_left_out_of_the_spread():
    limits = Budget(parameters=20000, epochs=3, target=99.05, last=2, seeds=2)
    lines, _ = verdict(AssignmentNet(), "zoo:AssignmentNet", Recipe(epochs=3), limits,
                       [run(3, [98.0, 99.1, 99.2]), run(3, [96.0, 97.0], seed=2)])
    facts = {what: value for what, value, _ in lines}
    assert facts["seeds hold"] == "1 of 2; the lowest of each one's last 2: lowest 99.10, median 99.10", facts


@pytest.mark.mnist
def test_the_command_ends_with_one_line_of_the_network_the_verdict_and_where_the_runs_went(capsys):
    assert budget.main(["zoo:AssignmentNet", *TINY, "--parameters", "20000", "--target", "99.99"]) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("budget.py: zoo:AssignmentNet, 1 seed of 2 epochs in "), last
    assert last.endswith(" min: falls short; the runs are in runs/"), last


@pytest.mark.mnist
def test_a_seeds_figures_and_weights_are_the_same_one_at_a_time_and_in_parallel(tmp_path):
    from s5.checkpoint import read_record
    for jobs in ("1", "2"):
        assert budget.main(["zoo:AssignmentNet", *TINY, "--seeds", "2", "--target", "1", "--parameters", "20000",
                            "--jobs", jobs, "--runs", f"jobs{jobs}"]) == 0, f"--jobs {jobs}"
    for seed in (1, 2):
        alone, parallel = (read_record(str(tmp_path / f"jobs{jobs}" / f"zoo.AssignmentNet-seed{seed}.pt"))
                           for jobs in (1, 2))
        assert alone["history"]["train_losses"] == parallel["history"]["train_losses"], f"seed {seed}'s losses"
        assert all(torch.equal(alone["model"][name], parallel["model"][name]) for name in alone["model"]), \
            f"seed {seed}'s weights"


@pytest.mark.mnist
def test_each_seed_trains_on_one_thread_and_its_record_says_so(tmp_path):
    from s5.checkpoint import read_record
    assert budget.main(["zoo:AssignmentNet", *TINY, "--target", "1", "--parameters", "20000", "--jobs", "1"]) == 0
    assert ", 1 thread, " in read_record(str(tmp_path / "runs" / "zoo.AssignmentNet-seed1.pt"))["machine"]


def test_the_default_jobs_share_seeds_out_evenly_among_the_cores():
    assert default_jobs(3, 2) == 3, "three seeds on two cores: one round of three, not two rounds"
    assert default_jobs(4, 2) == 2, "four seeds on two cores: two even rounds of two"
    assert default_jobs(10, 2) == 2, "ten seeds on two cores: two even rounds of five"
    assert default_jobs(5, 2) == 2, "five seeds on two cores: more than twice the cores, one per core"
    assert default_jobs(4, 3) == 4, "four seeds on three cores: at most twice the cores, all at once"
    assert default_jobs(1, 2) == 1, "one seed: one process"


def test_jobs_below_one_are_refused_in_one_sentence(capsys):
    assert budget.main(["zoo:AssignmentNet", *TINY, "--jobs", "0"]) == 2
    assert capsys.readouterr().err.strip() == "budget.py: --jobs must be 1 or more, not 0"
