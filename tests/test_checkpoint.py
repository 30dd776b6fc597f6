import os
import pickle
import re
import subprocess
import sys
import zipfile

import pytest
import torch
import torch.nn as nn
import torch.optim as optim

from model import Net
from s5.checkpoint import CheckpointError, fit_failure, load_checkpoint, read_record, save_checkpoint, save_record
from s5.fast import FastPath, grad_scaler
from s5.training import Recipe, train
from helpers import ROOT


class WritesAFile:
    """A pickle payload: unpickling it calls open(path, 'w'), which creates the file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


class CtrlCWhileSaving:
    """A value that torch.save pickles while it writes: a person pressing Ctrl-C at that moment, every time."""

    def __reduce__(self):
        raise KeyboardInterrupt


class ListsTheFolderAndFails:
    """A value that torch.save pickles while it writes the new checkpoint: it lists the folder, then fails."""

    def __init__(self, folder):
        self.folder, self.seen = folder, None

    def __reduce__(self):
        self.seen = sorted(os.listdir(self.folder))
        raise pickle.PicklingError("this value cannot be saved")


def make_run(train_data, seed=0):
    """The fast path on the CPU in batches of 64, its learning rate divided by 10 every 2 epochs."""
    torch.manual_seed(seed)
    return FastPath(train_data, None, "cpu", 64).training(Net(), Recipe(batch_size=64, step_size=2))


def run_epochs(training, epochs, history):
    for epoch in epochs:
        accuracy, loss = train(training.model, "cpu", training.batches, training.optimizer, training.criterion,
                               training.step, epoch)
        history["train_acc"].append(accuracy)
        history["train_losses"].append(loss)
        training.scheduler.step()


def test_resumed_run_ends_with_the_same_weights(mnist_train, tmp_path):
    """The fast path on a small subset: 3 epochs straight, against 2 epochs, a checkpoint, and 1 more."""
    data = torch.utils.data.Subset(mnist_train, range(224))  # batches of 64, 64, 64, 32
    straight_run, straight = make_run(data), {"train_acc": [], "train_losses": []}
    run_epochs(straight_run, [1, 2, 3], straight)

    first, history = make_run(data), {"train_acc": [], "train_losses": []}
    run_epochs(first, [1, 2], history)
    path = tmp_path / "run.pt"
    save_checkpoint(path, first.model, first.optimizer, first.scheduler, epoch=2, history=history)
    torch.manual_seed(123)  # whatever happens in between must not matter

    resumed = make_run(data, seed=99)
    state = load_checkpoint(path, resumed.model, resumed.optimizer, resumed.scheduler, restore_rng=True)
    assert state["epoch"] == 2
    assert resumed.scheduler.scheduler.last_epoch == 2, "StepLR where it stopped"
    run_epochs(resumed, [3], state["history"])

    assert state["history"] == straight
    expected = straight_run.model.state_dict()
    for name, tensor in resumed.model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    for a, b in zip(straight_run.optimizer.state_dict()["state"].values(),
                    resumed.optimizer.state_dict()["state"].values()):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path):
    model = Net()
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    path = tmp_path / "run.pt"
    save_checkpoint(path, model, optimizer, epoch=1)
    before = path.read_bytes()
    broken = ListsTheFolderAndFails(tmp_path)
    with pytest.raises(pickle.PicklingError):  # torch.save fails halfway through writing
        save_checkpoint(path, Net(), optimizer, epoch=2, history={"broken": broken})
    # the new file was being written beside the old one (a rename within one file system is atomic), under a
    # name that says whose it is, should a killed save leave it behind
    assert len(broken.seen) == 2, broken.seen
    assert broken.seen[0] == "run.pt", broken.seen
    assert broken.seen[1].startswith("run.pt."), broken.seen
    assert broken.seen[1].endswith(".tmp"), broken.seen
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["run.pt"]  # no temporary file left behind
    assert load_checkpoint(path, Net())["epoch"] == 1


def test_ctrl_c_while_saving_keeps_the_previous_checkpoint_and_no_temporary_file(tmp_path):
    path = tmp_path / "run.pt"
    save_checkpoint(path, Net(), epoch=1)
    before = path.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, Net(), epoch=2, history={"interrupted": CtrlCWhileSaving()})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["run.pt"]


KILLED_WHILE_SAVING = """
import os, random, signal, sys, time
import torch
from s5.checkpoint import load_checkpoint, save_checkpoint
from model import Net

path, model, kills, survived = sys.argv[1], Net(), int(sys.argv[2]), set()
os.umask(0o027)
save_checkpoint(path, model, epoch=0, payload=bytes(20_000_000))
random.seed(0)
for kill in range(kills):
    child = os.fork()
    if child == 0:  # saves new checkpoints, each of 20 MB, until it is killed
        for epoch in range(1 + 1000 * kill, 1001 + 1000 * kill):
            save_checkpoint(path, model, epoch=epoch, payload=bytes([epoch % 251]) * 20_000_000)
        os._exit(0)
    time.sleep(random.uniform(0.05, 1.0))
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    state = load_checkpoint(path, Net())  # raises if the file is not a whole checkpoint
    payload = state["payload"]
    assert payload == bytes([state["epoch"] % 251]) * 20_000_000, "a mixture of two saves"
    assert os.stat(path).st_mode & 0o777 == 0o640, oct(os.stat(path).st_mode)  # 0o666 less the umask
    survived.add(state["epoch"])
print(len(survived), "different checkpoints survived", kills, "kills")
"""


def test_a_save_killed_at_any_moment_leaves_a_whole_checkpoint(tmp_path):
    """SIGKILL at random moments of a loop of saves: the file on disk always loads, old or new, never a mixture."""
    run = subprocess.run([sys.executable, "-c", KILLED_WHILE_SAVING, str(tmp_path / "run.pt"), "8"], cwd=ROOT,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    survived = int(run.stdout.split()[0])
    assert survived >= 2  # the kills landed at different moments, some after whole saves


@pytest.mark.quick
def test_a_pickle_payload_is_refused_and_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pt"
    torch.save({"model": Net().state_dict(), "extra": WritesAFile(str(marker))}, path)
    # some notebooks set this to load old checkpoints; it must not reach ours
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(path, Net())
    assert not marker.exists()
    assert re.fullmatch(r"Refused to load \S*evil.pt: it carries Python objects that could run code when unpickled "
                        r"\(Unsupported global: GLOBAL (io|builtins)\.open\)\. Save checkpoints with checkpoint\.save_checkpoint or "
                        r"torch\.save\(model\.state_dict\(\), path\)\.",
                        str(refused.value)), str(refused.value)
    torch.load(path, weights_only=False)  # the payload is real: an unsafe load runs it
    assert marker.exists()


def test_a_bare_state_dict_loads(tmp_path):
    model = Net()
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    other = Net()
    load_checkpoint(tmp_path / "weights.pt", other)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_a_checkpoint_gets_the_permissions_of_an_ordinary_file(tmp_path, umask):
    before = os.umask(umask)
    try:
        save_checkpoint(tmp_path / "run.pt", Net(), epoch=1)
    finally:
        os.umask(before)
    assert os.stat(tmp_path / "run.pt").st_mode & 0o777 == 0o666 & ~umask


def test_weights_saved_on_a_gpu_load_on_the_cpu(tmp_path):
    """A checkpoint as a GPU machine writes it (Colab), its tensors' storages marked cuda:0, read on the CPU."""
    trained = Net()
    save_checkpoint(tmp_path / "cpu.pt", trained, epoch=20)
    with zipfile.ZipFile(tmp_path / "cpu.pt") as saved, zipfile.ZipFile(tmp_path / "gpu.pt", "w") as gpu:
        for entry in saved.infolist():
            data = saved.read(entry)
            if entry.filename.endswith("/data.pkl"):  # pickle protocol 2 writes the location string once
                assert data.count(b"X\x03\x00\x00\x00cpu") == 1
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
            gpu.writestr(entry, data)
    model = Net()
    state = load_checkpoint(tmp_path / "gpu.pt", model)
    assert state["epoch"] == 20
    assert state["model"]["conv1.weight"].device.type == "cpu"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), trained.state_dict().values()))


def test_loading_weights_leaves_the_random_stream_alone(tmp_path):
    """Only a resume (restore_rng=True) rewinds the generators; loading weights to predict must not."""
    model = Net()
    save_checkpoint(tmp_path / "run.pt", model, epoch=1)
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    load_checkpoint(tmp_path / "run.pt", model)
    assert torch.equal(torch.rand(4), expected)


def message_of(path, *objects):
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path, *objects)
    return str(error.value)


UNREADABLE = r"{} is not a readable PyTorch checkpoint \(truncated or corrupt: {}\); save it again or use another file"


@pytest.mark.quick
def test_damaged_or_foreign_checkpoints_get_clear_errors(tmp_path):
    """Each kind of bad file gets its whole sentence: which file, what is wrong with it, what to do."""
    path = tmp_path / "run.pt"
    save_checkpoint(path, Net(), epoch=1)
    damaged = {"truncated.pt": path.read_bytes()[:5000], "empty.pt": b"", "notes.pt": b"hello",
               "zeros.pt": bytes(100), "folder.pt": None}
    # torch's own words vary with its version (.+: one line of them); where it gives none, the error's name
    reasons = {"truncated.pt": ".+", "empty.pt": "EOFError", "notes.pt": ".+", "zeros.pt": ".+",
               "folder.pt": ".*Is a directory.*"}
    for name, data in damaged.items():
        (tmp_path / name).mkdir() if data is None else (tmp_path / name).write_bytes(data)
        assert re.fullmatch(UNREADABLE.format(re.escape(str(tmp_path / name)), reasons[name]),
                            message_of(tmp_path / name, Net())), message_of(tmp_path / name, Net())
    foreign = tmp_path / "foreign.pt"
    torch.save(nn.Linear(4, 2).state_dict(), foreign)
    assert message_of(foreign, Net()) == (
        f"{foreign} does not fit Net (missing key(s) \"conv1.weight\", \"conv1.bias\", \"conv2.weight\" and 9 more; "
        "unexpected key(s) \"weight\", \"bias\"): it was saved from another network; use weights trained for this one")
    torch.save([1, 2], tmp_path / "list.pt")
    assert message_of(tmp_path / "list.pt") == f"{tmp_path / 'list.pt'} holds a list, not a checkpoint dict or a state dict"
    assert message_of(tmp_path / "missing.pt") == \
        f"No checkpoint at {tmp_path / 'missing.pt'}: check the path, or train one with S5.ipynb"
    model = Net()
    optimizer = optim.SGD(model.parameters(), lr=0.01)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=15)
    for name, objects in (("optimizer", (optimizer,)), ("scheduler", (None, scheduler))):
        assert message_of(path, model, *objects) == (
            f"{path} holds no {name} state, so training cannot resume from it; load it without the {name}, "
            "or save checkpoints with save_checkpoint")


def test_the_fp16_loss_scale_is_kept_for_a_resume(tmp_path):
    model = Net()
    scaler = grad_scaler("cpu", torch.float16)
    scaler.scale(torch.ones(()))  # the first step creates the scale
    scaler.update(1024.0)  # as if training had lowered it
    save_checkpoint(tmp_path / "fp16.pt", model, scaler=scaler)
    resumed = grad_scaler("cpu", torch.float16)
    load_checkpoint(tmp_path / "fp16.pt", Net(), scaler=resumed)
    assert resumed.get_scale() == 1024.0
    # the weights of an fp16 run (a T4's) read without a scaler, as predict.py and the app read them
    weights = Net()
    load_checkpoint(tmp_path / "fp16.pt", weights)
    assert all(torch.equal(a, b) for a, b in zip(weights.state_dict().values(), model.state_dict().values()))


@pytest.mark.quick
def test_a_save_replaces_the_file_by_renaming_never_by_writing_into_it(tmp_path):
    """A second name for the old file keeps the old bytes: the new checkpoint arrived as a new file renamed onto
    the path, so no moment existed when the path held half of each."""
    path, alias = tmp_path / "run.pt", tmp_path / "alias.pt"
    model = Net()
    save_checkpoint(path, model, epoch=1)
    old = path.read_bytes()
    os.link(path, alias)
    save_checkpoint(path, model, epoch=2)
    assert alias.read_bytes() == old
    assert load_checkpoint(path)["epoch"] == 2
    assert os.stat(path).st_ino != os.stat(alias).st_ino


@pytest.mark.quick
def test_the_record_of_a_run_is_written_and_read_by_one_module(tmp_path):
    model = Net()
    history = {"train_losses": [1.0, 0.5], "train_acc": [80.0, 90.0], "test_losses": [0.4, 0.2],
               "test_acc": [96.0, 95.5], "epoch_seconds": [3.0, 2.0]}  # the last epoch's is not the best
    recipe = Recipe(epochs=2, lr=0.05, scheduler="onecycle")
    save_record(tmp_path / "run.pt", model, history, network="model:Net", recipe=recipe, seed=3, fast=True,
                precision="bf16", cuda_graph=False, train_seconds=5.5)
    state = read_record(tmp_path / "run.pt")
    assert {key: state[key] for key in ("epoch", "history", "test_accuracy", "seed", "fast", "precision",
                                         "cuda_graph", "train_seconds", "network", "parameters")} == {
        "epoch": 2, "history": history, "test_accuracy": 95.5, "seed": 3, "fast": True, "precision": "bf16",
        "cuda_graph": False, "train_seconds": 5.5, "network": "model:Net", "parameters": 593200}
    assert Recipe(**state["recipe"]) == recipe
    weights = Net()
    load_checkpoint(tmp_path / "run.pt", weights)  # as predict.py and the demo read it
    assert all(torch.equal(a, b) for a, b in zip(weights.state_dict().values(), model.state_dict().values()))
    save_checkpoint(tmp_path / "weights.pt", model, epoch=2)
    with pytest.raises(CheckpointError) as error:
        read_record(tmp_path / "weights.pt")
    assert str(error.value) == (f"{tmp_path / 'weights.pt'} is not the record of an S5.ipynb run (it has no network, "
                                "parameters, recipe, history, test_accuracy, seed, fast, precision, cuda_graph, "
                                "train_seconds): read it with load_checkpoint, or run the notebook to make one")


@pytest.mark.quick
def test_weights_of_the_right_names_but_wrong_shapes_say_which_layers_differ(tmp_path):
    weights = Net().state_dict()
    weights["fc1.weight"] = torch.zeros(50, 100)
    torch.save(weights, tmp_path / "resized.pt")
    assert message_of(tmp_path / "resized.pt", Net()) == (
        f"{tmp_path / 'resized.pt'} does not fit Net (size mismatch for fc1.weight: copying a param with shape "
        "torch.Size([50, 100]) from checkpoint, the shape in current model is torch.Size([50, 4096])): it was saved "
        "from another network; use weights trained for this one")


def load_error(model, state):
    """The error PyTorch raises loading `state` into `model`."""
    with pytest.raises(RuntimeError) as raised:
        model.load_state_dict(state)
    return raised.value


@pytest.mark.quick
def test_a_does_not_fit_line_lists_a_few_keys_and_says_how_many_more_only_when_there_are_more():
    three = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2, bias=False))  # 3 weights and biases
    assert fit_failure(load_error(three, {})) == 'missing key(s) "0.weight", "0.bias", "1.weight"', \
        "exactly as many missing keys as it lists: no 'and 0 more'"


@pytest.mark.quick
def test_a_does_not_fit_line_counts_the_size_mismatches_it_leaves_out():
    four = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    wrong = {key: torch.zeros(5, *value.shape) for key, value in four.state_dict().items()}
    line = fit_failure(load_error(four, wrong))
    assert line.count("size mismatch for") == 3, line
    assert line.endswith("; 1 more size mismatches"), line


@pytest.mark.quick
@pytest.mark.parametrize("error, line", [(RuntimeError("the file ends early"), "the file ends early"),
                                         (RuntimeError(""), "RuntimeError")])
def test_an_error_with_no_keys_or_sizes_gives_its_first_line_or_its_name(error, line):
    assert fit_failure(error) == line
