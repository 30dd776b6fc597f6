import os
import re
import subprocess
import sys

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.optim as optim

import utils
from helpers import ROOT
import data
from data import load_mnist
from fast import DeviceLoader
from model import Net
from utils import (GetCorrectPredCount, get_confusion_matrix, get_device, get_summary, per_class_accuracy,
                   plot_confusion_matrix, plot_incorrect, plot_loss, train)
from utils import test as evaluate  # pytest would collect a function named test

# The original notebook's torchsummary table, row for row, as its published outputs show it.
SEED_TABLE = """\
----------------------------------------------------------------
        Layer (type)               Output Shape         Param #
================================================================
            Conv2d-1           [-1, 32, 26, 26]             320
            Conv2d-2           [-1, 64, 24, 24]          18,496
            Conv2d-3          [-1, 128, 10, 10]          73,856
            Conv2d-4            [-1, 256, 8, 8]         295,168
            Linear-5                   [-1, 50]         204,850
            Linear-6                   [-1, 10]             510
================================================================
Total params: 593,200
Trainable params: 593,200
Non-trainable params: 0
----------------------------------------------------------------
Input size (MB): 0.00
Forward/backward pass size (MB): 0.67
Params size (MB): 2.26
Estimated Total Size (MB): 2.94
----------------------------------------------------------------
"""


TEST_LINE = re.compile(r"^Test set: Average loss: \d+\.\d{4}, Accuracy: (\d+)/(\d+) \((\d+\.\d{2})%\)$", re.M)
BAR = re.compile(r"Train: Loss=\d+\.\d{4} Batch_id=(\d+) Accuracy=\d+\.\d{2}")


@pytest.fixture(scope="module")
def small_loaders():
    """The seed pipeline (PIL transforms) on the first 1024 train and 512 test images."""
    train_data = load_mnist(train=True, transform=data.train_transforms, subset=1024)
    test_data = load_mnist(train=False, transform=data.test_transforms, subset=512)
    return (torch.utils.data.DataLoader(train_data, batch_size=64, shuffle=True),
            torch.utils.data.DataLoader(test_data, batch_size=128))


@pytest.mark.quick
def test_star_import_gives_the_original_names():
    namespace = {}
    exec("from utils import *\nfrom model import *", namespace)
    for name in ("device", "train", "test", "plot_loss", "get_summary", "GetCorrectPredCount", "plt", "Net", "nn"):
        assert name in namespace, name


@pytest.mark.parametrize("make", [lambda: Net, lambda: Net(), lambda: Net().to(memory_format=torch.channels_last)],
                         ids=["class", "instance", "channels_last instance"])
@pytest.mark.quick
def test_summary_prints_the_seed_table(make, capsys):
    assert get_summary(make()) == 593200
    assert capsys.readouterr().out == SEED_TABLE


@pytest.mark.quick
def test_the_summary_is_made_on_a_copy_and_leaves_the_model_as_it_was(capsys):
    model = Net().to(memory_format=torch.channels_last)
    get_summary(model)
    assert model.conv2.weight.is_contiguous(memory_format=torch.channels_last) and not model.conv2.weight.is_contiguous()


@pytest.mark.quick
def test_get_correct_pred_count():
    pred = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert GetCorrectPredCount(pred, torch.tensor([1, 0, 0])) == 2


def test_train_and_test_on_real_mnist(small_loaders, capsys):
    train_loader, test_loader = small_loaders
    torch.manual_seed(0)
    model = Net()
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    losses = []
    for epoch in range(1, 4):
        accuracy, loss = train(model, "cpu", train_loader, optimizer, criterion)
        assert isinstance(accuracy, float) and 0 <= accuracy <= 100
        assert isinstance(loss, float) and loss > 0
        losses.append(loss)
    print("mean train loss per epoch", losses)
    assert losses[0] > losses[1] > losses[2] and losses[2] < losses[0] - 0.1  # it learns
    progress = capsys.readouterr().err
    bars = [int(i) for i in BAR.findall(progress)]
    # not a terminal: one final line per epoch, reading like the original's log
    assert bars == [len(train_loader) - 1] * 3 and "\r" not in progress
    assert re.findall(r"Accuracy=(\d+\.\d\d)", progress)[-1] == f"{accuracy:.2f}"  # the epoch's, as returned

    test_accuracy, test_loss = evaluate(model, "cpu", test_loader, criterion)
    line = TEST_LINE.search(capsys.readouterr().out)
    assert line and int(line.group(2)) == 512
    assert float(line.group(3)) == pytest.approx(test_accuracy, abs=0.005)
    assert int(line.group(1)) == round(test_accuracy * 512 / 100)
    assert isinstance(test_loss, float) and 0 < test_loss < losses[0]
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
    assert len(figure.axes) == 10 and all(image.get_cmap().name == "gray" for image in shown)  # 2 rows of 5
    assert (shown[3].get_array() == incorrect["images"][3][0].numpy()).all()
    assert figure._suptitle.get_text() == f"{wrong} misclassified test digits: label -> prediction (probability)"
    matplotlib.pyplot.close(figure)


def test_confusion_matrix_and_per_class_accuracy(mnist_test):
    torch.manual_seed(0)
    model = Net()
    loader = DeviceLoader(torch.utils.data.Subset(mnist_test, range(1000)), 512, "cpu")
    matrix = get_confusion_matrix(model, "cpu", loader)
    assert matrix.shape == (10, 10) and matrix.dtype == torch.int64 and matrix.sum() == 1000
    assert matrix.sum(dim=1).tolist() == torch.bincount(mnist_test.targets[:1000], minlength=10).tolist()
    correct = sum(GetCorrectPredCount(model(d), t) for d, t in loader)
    assert matrix.diag().sum().item() == correct
    accuracy = per_class_accuracy(matrix)
    assert accuracy[3].item() == pytest.approx(100 * matrix[3, 3].item() / matrix[3].sum().item())
    figure = plot_confusion_matrix(matrix)
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert len(texts) == 100 and texts[0] == str(matrix[0, 0].item())
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == [str(d) for d in range(10)]
    matplotlib.pyplot.close(figure)


@pytest.mark.quick
def test_the_confusion_matrix_picture_shows_readable_counts_beside_each_digits_accuracy():
    matrix = torch.diag(torch.full((10,), 1000))
    matrix[3, 5] = 20  # twenty threes read as fives
    figure = plot_confusion_matrix(matrix)
    ax, bar = figure.axes
    assert tuple(figure.get_size_inches()) == (14, 6)
    assert ax.get_subplotspec().get_gridspec().get_width_ratios() == [3, 2]
    assert ax.get_images()[0].get_cmap().name == "Blues"
    assert np.allclose(ax.get_images()[0].get_array(), matrix.float().log1p().numpy())
    texts = {tuple(t.get_position()): t for t in ax.texts}
    # on a log scale, white on the dark cells (above half the darkest), black elsewhere
    assert texts[(3, 3)].get_text() == "1000" and texts[(3, 3)].get_color() == "white"
    assert texts[(5, 3)].get_text() == "20" and texts[(5, 3)].get_color() == "black"
    assert texts[(0, 3)].get_text() == "0" and texts[(0, 3)].get_color() == "black"
    assert all((t.get_ha(), t.get_va(), t.get_fontsize()) == ("center", "center", 8) for t in ax.texts)
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("predicted digit", "true digit",
                                                                   "Confusion matrix (test set)")
    assert list(ax.get_xticks()) == list(range(10)) and list(ax.get_yticks()) == list(range(10))
    assert [round(p.get_width(), 2) for p in bar.patches] == [100.0] * 3 + [98.04] + [100.0] * 6
    assert bar.texts[3].get_text() == " 98.04%" and bar.texts[3].get_position() == (pytest.approx(98.04, abs=0.01), 3)
    assert bar.get_xlim() == pytest.approx((96.04, 100.5), abs=0.01) and bar.yaxis_inverted()
    assert list(bar.get_yticks()) == list(range(10))
    assert (bar.get_xlabel(), bar.get_title()) == ("accuracy (%)", "Accuracy per digit")
    matplotlib.pyplot.close(figure)
    assert per_class_accuracy(torch.zeros(10, 10, dtype=torch.int64)).tolist() == [0.0] * 10  # no sample: no error
    assert per_class_accuracy(torch.eye(10, dtype=torch.int64)).tolist() == [100.0] * 10


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
    accuracy, loss = train(model, "cpu", batches, optim.SGD(model.parameters(), lr=1.0), nn.CrossEntropyLoss(),
                           train_step=step)
    assert len(taken) == 4 and all(a is b for a, b in zip(taken, batches))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # train took no step of its own
    with torch.no_grad():
        predictions = [model(data) for data, _ in batches]
    correct = sum(GetCorrectPredCount(p, target) for p, (_, target) in zip(predictions, batches))
    assert accuracy == pytest.approx(100 * correct / 200)
    assert loss == pytest.approx(sum(nn.functional.nll_loss(p, target).item()
                                     for p, (_, target) in zip(predictions, batches)) / 4)


@pytest.mark.quick
def test_plot_loss_has_the_four_titled_axes():
    figure = plot_loss([1.0, 0.5], [80.0, 90.0], [0.6, 0.4], [85.0, 95.0])
    assert [ax.get_title() for ax in figure.axes] == ["Training Loss", "Training Accuracy", "Test Loss", "Test Accuracy"]
    assert list(figure.axes[3].lines[0].get_ydata()) == [85.0, 95.0]
    assert [ax.get_xlabel() for ax in figure.axes] == ["epoch"] * 4
    assert tuple(figure.get_size_inches()) == (15, 10)  # the original's figure
    matplotlib.pyplot.close(figure)


def test_device_on_this_machine():
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert utils.device.type == expected
    hidden = subprocess.run([sys.executable, "-c", "from utils import device; print(device)"], cwd=ROOT,
                            env={**__import__("os").environ, "CUDA_VISIBLE_DEVICES": ""},
                            capture_output=True, text=True, timeout=120)
    assert hidden.stdout.strip() == ("mps" if torch.backends.mps.is_available() else "cpu")


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (True, False, "cuda"),
                                                  (False, True, "mps"), (False, False, "cpu")])
@pytest.mark.quick
def test_device_preference(monkeypatch, cuda, mps, expected):
    # only the two availability probes are replaced, to walk the branches this machine lacks
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert get_device() == torch.device(expected)


def requirement_versions(filename, operator):
    with open(os.path.join(ROOT, filename)) as f:
        return dict(re.findall(rf"^([\w-]+){operator}([\w.]+)", f.read(), re.M))


def test_the_floors_are_the_same_in_the_code_and_the_requirement_files():
    ranges, floor = requirement_versions("requirements.txt", ">="), requirement_versions("requirements-floor.txt", "==")
    assert set(ranges) == set(floor)  # CI's floor environment pins every core package at its floor
    for name, version in floor.items():
        assert utils._release(ranges[name]) == utils._release(version), name
    for name, version in utils.FLOORS.items():
        assert utils._release(version) == utils._release(floor[name]), name
    lock = requirement_versions("requirements-lock.txt", "==")
    for name, version in ranges.items():  # the locked versions satisfy the ranges
        assert utils._release(lock[name]) >= utils._release(version), name


@pytest.mark.quick
def test_a_version_below_the_floor_gets_one_sentence():
    utils.check_versions({"torch": "2.6.0+cu124", "torchvision": "0.21.0"})
    with pytest.raises(ImportError, match=r"^This project needs torch 2\.6 or newer \(this Python has 2\.5\.1\+cpu\): "
                                          r"pip install -r requirements\.txt$"):
        utils.check_versions({"torch": "2.5.1+cpu", "torchvision": "0.21.0"})
    with pytest.raises(ImportError, match=r"torch 2\.6 or newer .* and torchvision 0\.21 or newer \(this Python has 0\.9"):
        utils.check_versions({"torch": "1.13.0", "torchvision": "0.9.1"})


@pytest.mark.quick
def test_a_missing_package_gets_the_command_that_installs_it():
    with pytest.raises(ModuleNotFoundError, match=r"^no_such_package_s5 is not installed .*`%pip install "
                                                  r"no-such-package`"):
        utils.require("no_such_package_s5", "no-such-package")
    assert utils.require("torchsummary", "torchsummary").summary is utils.summary
    with pytest.raises(ModuleNotFoundError) as error:  # a module inside a missing package names the package
        utils.require("no_such_package_s5.sub", "no-such-package")
    assert str(error.value) == ("no_such_package_s5.sub is not installed (Colab and Kaggle do not ship it): run `pip "
                                "install no-such-package`, in a notebook cell `%pip install no-such-package`, or "
                                "`pip install -r requirements.txt`")


@pytest.mark.quick
def test_the_progress_variable_decides_and_a_bad_value_is_named(monkeypatch):
    monkeypatch.setenv("S5_PROGRESS", "live")
    assert utils.live_progress()
    monkeypatch.setenv("S5_PROGRESS", "final")
    assert not utils.live_progress()
    monkeypatch.setenv("S5_PROGRESS", "sometimes")
    with pytest.raises(ValueError, match="S5_PROGRESS='sometimes' is not understood: set it to live or final"):
        utils.live_progress()
    monkeypatch.delenv("S5_PROGRESS")
    assert not utils.watched_notebook()  # pytest is no notebook
