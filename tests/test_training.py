"""training.py: the recipe, the one step, the epoch loops and their progress bars."""
import io
import os
import re
import struct
import subprocess
import sys

import matplotlib
import pytest
import torch
import torch.nn as nn
import torch.optim as optim

from model import Net
from utils import GetCorrectPredCount
from s5 import data
from s5 import training
from s5.data import load_mnist
from s5.fast import DeviceLoader
from s5.pictures import plot_confusion_matrix, plot_incorrect
from s5.training import Recipe, get_confusion_matrix, per_class_accuracy, train
from s5.training import test as evaluate  # pytest would collect a function named test
from helpers import ROOT

TEST_LINE = re.compile(r"^Test set: Average loss: \d+\.\d{4}, Accuracy: (\d+)/(\d+) \((\d+\.\d{2})%\)$", re.M)
BAR = re.compile(r"Train: Loss=\d+\.\d{4} Batch_id=(\d+) Accuracy=\d+\.\d{2}")


@pytest.fixture(scope="module")
def small_loaders():
    """The original pipeline (PIL transforms) on the first 1024 train and 512 test images."""
    train_data = load_mnist(train=True, transform=data.train_transforms, subset=1024)
    test_data = load_mnist(train=False, transform=data.test_transforms, subset=512)
    return (torch.utils.data.DataLoader(train_data, batch_size=64, shuffle=True),
            torch.utils.data.DataLoader(test_data, batch_size=128))


def test_train_and_test_on_real_mnist(small_loaders, capsys):
    train_loader, test_loader = small_loaders
    torch.manual_seed(0)
    model = Net()
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    losses = []
    for epoch in range(1, 4):
        accuracy, loss = train(model, "cpu", train_loader, optimizer, criterion)
        assert isinstance(accuracy, float)
        assert 0 <= accuracy <= 100
        assert isinstance(loss, float)
        assert loss > 0
        losses.append(loss)
    print("mean train loss per epoch", losses)
    assert losses[0] > losses[1] > losses[2]
    assert losses[2] < losses[0] - 0.1  # it learns
    progress = capsys.readouterr().err
    bars = [int(i) for i in BAR.findall(progress)]
    # not a terminal: one final line per epoch, reading like the original's log
    assert bars == [len(train_loader) - 1] * 3
    assert "\r" not in progress
    assert re.findall(r"Accuracy=(\d+\.\d\d)", progress)[-1] == f"{accuracy:.2f}"  # the epoch's, as returned

    test_accuracy, test_loss = evaluate(model, "cpu", test_loader, criterion)
    line = TEST_LINE.search(capsys.readouterr().out)
    assert line
    assert int(line.group(2)) == 512
    assert float(line.group(3)) == pytest.approx(test_accuracy, abs=0.005)
    assert int(line.group(1)) == round(test_accuracy * 512 / 100)
    assert isinstance(test_loss, float)
    assert 0 < test_loss < losses[0]
    print("test accuracy", test_accuracy)
    assert test_accuracy > 30  # chance is 10%


@pytest.mark.quick
def test_test_loss_is_the_mean_per_sample(mnist_test):
    torch.manual_seed(0)
    model = Net().eval()
    loader = DeviceLoader(mnist_test, 300, "cpu")  # batches of 300 and a last one of 100
    _, loss = evaluate(model, "cpu", list(loader)[:2], nn.CrossEntropyLoss())
    data = torch.cat([b[0] for b in list(loader)[:2]])
    target = torch.cat([b[1] for b in list(loader)[:2]])
    with torch.no_grad():
        expected = nn.functional.cross_entropy(model(data), target).item()
    assert loss == pytest.approx(expected, rel=1e-5)


def test_test_fills_the_incorrect_predictions(mnist_test, capsys):
    torch.manual_seed(0)
    model = Net()  # untrained: most answers are wrong
    loader = DeviceLoader(torch.utils.data.Subset(mnist_test, range(600)), 256, "cpu")
    incorrect = {"images": [], "ground_truths": [], "predicted_vals": []}
    accuracy, _ = evaluate(model, "cpu", loader, nn.CrossEntropyLoss(), incorrect)
    wrong = round(600 * (100 - accuracy) / 100)
    assert len(incorrect["images"]) == len(incorrect["ground_truths"]) == len(incorrect["predicted_vals"]) == wrong
    assert all(g != p for g, p in zip(incorrect["ground_truths"], incorrect["predicted_vals"]))
    assert incorrect["images"][0].shape == (1, 28, 28)
    assert all(0 < p <= 1 for p in incorrect["probabilities"])
    evaluate(model, "cpu", loader, nn.CrossEntropyLoss(), incorrect)
    assert len(incorrect["images"]) == wrong  # refilled, not appended to

    figure = plot_incorrect(incorrect, count=10)
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert len(titles) == 10
    assert titles[0] == f"{incorrect['ground_truths'][0]} -> {incorrect['predicted_vals'][0]} " \
                        f"({incorrect['probabilities'][0]:.2f})"
    shown = [ax.get_images()[0] for ax in figure.axes if ax.get_images()]
    assert len(figure.axes) == 10
    assert all(image.get_cmap().name == "gray" for image in shown)  # 2 rows of 5
    assert (shown[3].get_array() == incorrect["images"][3][0].numpy()).all()
    assert figure._suptitle.get_text() == f"{wrong} misclassified test digits: label -> prediction (probability)"
    matplotlib.pyplot.close(figure)


class CloseCall(nn.Module):
    """Scores for 0 and 1 that differ by a thousandth of their size: float32 ranks 1 first, bfloat16 (8 bits of
    mantissa) rounds them equal, and argmax takes the first, 0."""

    def __init__(self):
        super().__init__()
        self.scores = nn.Linear(784, 10, bias=False)
        with torch.no_grad():
            self.scores.weight.zero_()
            self.scores.weight[0], self.scores.weight[1] = 1.0, 1.001

    def forward(self, x):
        return self.scores((x + 1).flatten(1))


def test_the_confusion_matrix_counts_the_answers_in_the_precision_it_is_given(mnist_test):
    loader = DeviceLoader(torch.utils.data.Subset(mnist_test, range(100)), 100, "cpu")
    fp32, bf16 = (get_confusion_matrix(CloseCall(), "cpu", loader, amp_dtype) for amp_dtype in (None, torch.bfloat16))
    assert fp32.sum(dim=0)[1] == 100, "float32: every answer 1"
    assert bf16.sum(dim=0)[0] == 100, "bfloat16 asked for, yet the answers are float32's"


def test_test_scores_the_answers_in_the_precision_it_is_given(mnist_test):
    loader = DeviceLoader(torch.utils.data.Subset(mnist_test, range(100)), 100, "cpu")
    ones, zeros = ((mnist_test.targets[:100] == digit).sum().item() for digit in (1, 0))
    assert ones != zeros, "the first 100 test digits hold as many 1s as 0s: float32 and bfloat16 would score alike"
    fp32, _ = evaluate(CloseCall(), "cpu", loader, nn.CrossEntropyLoss())
    bf16, _ = evaluate(CloseCall(), "cpu", loader, nn.CrossEntropyLoss(), amp_dtype=torch.bfloat16)
    assert (fp32, bf16) == (ones, zeros), "test() in bfloat16 should answer 0 everywhere and float32 1 everywhere"


def test_confusion_matrix_and_per_class_accuracy(mnist_test):
    torch.manual_seed(0)
    model = Net()
    loader = DeviceLoader(torch.utils.data.Subset(mnist_test, range(1000)), 512, "cpu")
    matrix = get_confusion_matrix(model, "cpu", loader)
    assert matrix.shape == (10, 10)
    assert matrix.dtype == torch.int64
    assert matrix.sum() == 1000
    assert matrix.sum(dim=1).tolist() == torch.bincount(mnist_test.targets[:1000], minlength=10).tolist()
    correct = sum(GetCorrectPredCount(model(d), t) for d, t in loader)
    assert matrix.diag().sum().item() == correct
    accuracy = per_class_accuracy(matrix)
    assert accuracy[3].item() == pytest.approx(100 * matrix[3, 3].item() / matrix[3].sum().item())
    figure = plot_confusion_matrix(matrix)
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert len(texts) == 100
    assert texts[0] == str(matrix[0, 0].item())
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == [str(d) for d in range(10)]
    matplotlib.pyplot.close(figure)


@pytest.mark.quick
def test_a_non_finite_loss_stops_training_and_names_the_batch(mnist_test):
    torch.manual_seed(0)
    model = Net()
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = list(DeviceLoader(torch.utils.data.Subset(mnist_test, range(256)), 64, "cpu"))
    batches[2][0][0, 0, 5, 5] = float("nan")
    with pytest.raises(FloatingPointError) as error:
        train(model, "cpu", batches, optimizer, nn.CrossEntropyLoss(), epoch=7)
    assert str(error.value) == ("Training loss became nan at epoch 7, batch 2: training stopped. Lower the learning "
                                "rate, or check that the inputs are normalized and contain no NaN.")
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad batch never reached the weights
    batches[0][0][0, 0, 5, 5] = float("inf")  # the very first batch, and no epoch given
    with pytest.raises(FloatingPointError, match=r"^Training loss became nan at batch 0: training stopped\."):
        train(model, "cpu", batches, optimizer, nn.CrossEntropyLoss())


@pytest.mark.quick
def test_a_given_train_step_runs_every_step_and_train_only_keeps_the_score(mnist_test):
    """The contract the fast path's CUDA graph relies on, checked with a step that scores without learning."""
    torch.manual_seed(0)
    model = Net()
    batches = list(DeviceLoader(torch.utils.data.Subset(mnist_test, range(200)), 64, "cpu"))  # 64, 64, 64, 8
    taken = []

    def step(batch):
        taken.append(batch)
        data, target = batch
        with torch.no_grad():
            prediction = model(data)
        return nn.functional.nll_loss(prediction, target), prediction, target

    before = [p.detach().clone() for p in model.parameters()]
    accuracy, loss = train(model, "cpu", batches, optim.SGD(model.parameters(), lr=1.0), nn.CrossEntropyLoss(), step)
    assert len(taken) == 4
    assert all(a is b for a, b in zip(taken, batches))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # train took no step of its own
    with torch.no_grad():
        predictions = [model(data) for data, _ in batches]
    correct = sum(GetCorrectPredCount(p, target) for p, (_, target) in zip(predictions, batches))
    assert accuracy == pytest.approx(100 * correct / 200)
    assert loss == pytest.approx(sum(nn.functional.nll_loss(p, target).item()
                                     for p, (_, target) in zip(predictions, batches)) / 4)


TERMINAL_EPOCH = """
import time
import torch, torch.nn as nn, torch.optim as optim
from s5 import data, training
from model import Net
loader = torch.utils.data.DataLoader(data.load_mnist(train=True, transform=data.test_transforms, subset=640),
                                     batch_size=64)
model = Net()
optimizer, criterion = optim.SGD(model.parameters(), lr=0.01), nn.CrossEntropyLoss()
step = training.Step(model, "cpu", optimizer, criterion)
def slow_step(batch):  # long enough an epoch for several of tqdm's refreshes (one each 0.1 s)
    time.sleep(0.05)
    return step(batch)
training.train(model, "cpu", loader, optimizer, criterion, slow_step)
"""


@pytest.mark.mnist
@pytest.mark.quick
def test_on_a_terminal_the_bar_refreshes_during_the_epoch(monkeypatch):
    """A person at a terminal sees the epoch go by: the bar is redrawn in place (carriage returns) with the batch
    counter rising, not written once at the end as in a log."""
    pty, termios, fcntl = (pytest.importorskip(name) for name in ("pty", "termios", "fcntl"))  # not on Windows
    monkeypatch.delenv("S5_PROGRESS", raising=False)
    main, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))  # a new pty is 0 wide: no bar
    child = subprocess.Popen([sys.executable, "-c", TERMINAL_EPOCH], cwd=ROOT, stdin=terminal, stdout=terminal,
                             stderr=terminal)
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the terminal closes with the child
            break
        if not chunk:
            break
        shown += chunk
    os.close(main)
    assert child.wait(timeout=60) == 0, shown.decode(errors="replace")
    shown = shown.decode()
    batches = [int(i) for i in BAR.findall(shown)]
    assert "\r" in shown
    assert batches[-1] == 9
    assert len(set(batches)) >= 3
    assert batches == sorted(batches)  # refreshed mid-epoch, counting up


@pytest.mark.quick
def test_the_progress_variable_decides_and_a_bad_value_is_named(monkeypatch):
    monkeypatch.setenv("S5_PROGRESS", "live")
    assert training.live_progress()
    monkeypatch.setenv("S5_PROGRESS", "final")
    assert not training.live_progress()
    monkeypatch.setenv("S5_PROGRESS", "sometimes")
    with pytest.raises(ValueError, match="S5_PROGRESS='sometimes' is not understood: set it to live or final"):
        training.live_progress()
    monkeypatch.delenv("S5_PROGRESS")
    assert not training.watched_notebook()  # pytest is no notebook


@pytest.fixture
def kernel_shell(monkeypatch):
    """A real IPython shell configured as a Jupyter kernel's (IPKernelApp), with none of the signs that a person has
    its notebook open: the environment of papermill's and nbconvert's kernels."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config
    for variable in ("JPY_SESSION_NAME", "KAGGLE_KERNEL_RUN_TYPE", "S5_PROGRESS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    config = Config()
    config.IPKernelApp.connection_file = "kernel.json"
    yield InteractiveShell.instance(config=config)
    InteractiveShell.clear_instance()


NOTEBOOK_SIGNS = {
    "JupyterLab": lambda shell, monkeypatch: monkeypatch.setenv("JPY_SESSION_NAME", "S5.ipynb"),
    "VS Code": lambda shell, monkeypatch: shell.user_ns.update(__vsc_ipynb_file__="S5.ipynb"),
    "Colab": lambda shell, monkeypatch: monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab")),
    "Kaggle": lambda shell, monkeypatch: monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive"),
}


@pytest.mark.quick
@pytest.mark.parametrize("editor", NOTEBOOK_SIGNS)
def test_a_kernel_whose_notebook_a_person_has_open_is_watched(kernel_shell, monkeypatch, editor):
    assert not training.watched_notebook(), "a kernel with no sign of a person is taken for a watched notebook"
    NOTEBOOK_SIGNS[editor](kernel_shell, monkeypatch)
    assert training.watched_notebook(), f"a kernel that {editor} has open is not taken for a watched notebook"


@pytest.mark.quick
def test_a_kaggle_batch_run_is_not_watched(kernel_shell, monkeypatch):
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Batch")
    assert not training.watched_notebook(), "Kaggle's batch run (no person) is taken for a watched notebook"


@pytest.mark.quick
def test_an_ipython_terminal_is_no_notebook_whatever_its_environment(monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell
    monkeypatch.setenv("JPY_SESSION_NAME", "S5.ipynb")
    InteractiveShell.instance()
    try:
        assert not training.watched_notebook(), "a shell that is not a kernel is taken for a notebook"
    finally:
        InteractiveShell.clear_instance()


@pytest.mark.quick
def test_the_bars_refresh_in_a_watched_notebook_and_write_one_line_an_epoch_in_papermills(kernel_shell, monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a kernel's stderr is no terminal, even under pytest -s
    assert not training.live_progress(), "the bars refresh in a kernel that no person watches"
    monkeypatch.setenv("JPY_SESSION_NAME", "S5.ipynb")
    assert training.live_progress(), "the bars do not refresh in a notebook a person has open"


@pytest.mark.quick
def test_the_recipes_rotation_is_the_seed_pipelines_with_its_transforms_and_is_refused_out_of_range():
    from torchvision import transforms
    rotations = [t.degrees for t in data.train_augmentation(7.0).transforms if isinstance(t, transforms.RandomRotation)]
    assert rotations == [[-7.0, 7.0]]
    assert [t.degrees for t in data.train_transforms.transforms if isinstance(t, transforms.RandomRotation)] == [
        [-15.0, 15.0]]  # the original's
    assert Recipe().rotation == 15.0
    assert Recipe(rotation=0).rotation == 0
    for rotation in (-1.0, 181.0):
        with pytest.raises(ValueError, match=f"The recipe's rotation must be from 0 to 180 degrees, not {rotation}"):
            Recipe(rotation=rotation)
