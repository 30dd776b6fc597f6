"""Training and evaluation helpers for the S5 notebook, with the original's names and signatures.

`from utils import *` gives device, train, test, plot_loss, get_summary, GetCorrectPredCount and plt,
as the original notebook expects, plus the evaluation pictures."""
import copy
import importlib
import math
import os
import re
import sys
import time
import warnings

import matplotlib.pyplot as plt
import torch
import torchvision

from fast import autocast
from pictures import digit_grid

# The oldest versions the tests pass on (requirements-floor.txt; a test keeps the two in step).
FLOORS = {"torch": "2.6", "torchvision": "0.21"}


def _release(version):
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:2])


def check_versions(installed):
    """Raises ImportError in one sentence when a package of `installed` ({name: version}) is below FLOORS."""
    old = [f"{name} {FLOORS[name]} or newer (this Python has {version})" for name, version in installed.items()
           if _release(version) < _release(FLOORS[name])]
    if old:
        raise ImportError(f"This project needs {' and '.join(old)}: pip install -r requirements.txt")


def require(module, install):
    """Imports `module`; when it is missing, says in one sentence how to install it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module.split(".")[0]:
            raise
        raise ModuleNotFoundError(f"{module} is not installed (Colab and Kaggle do not ship it): run "
                                  f"`pip install {install}`, in a notebook cell `%pip install {install}`, or "
                                  "`pip install -r requirements.txt`") from None


check_versions({"torch": torch.__version__, "torchvision": torchvision.__version__})
summary = require("torchsummary", "torchsummary").summary

with warnings.catch_warnings():
    # Without ipywidgets, tqdm.auto warns and falls back to text bars, which is what we want in
    # headless runs (the committed notebook's log); with ipywidgets, Jupyter shows widget bars.
    warnings.simplefilter("ignore")
    from tqdm.auto import tqdm


def get_device():
    """CUDA if there is a GPU, else Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


device = get_device()


def count_correct(prediction, labels):
    """How many rows of `prediction` have their largest value at the label, as a tensor on their device."""
    return prediction.argmax(dim=1).eq(labels).sum()


def GetCorrectPredCount(pPrediction, pLabels):
    return count_correct(pPrediction, pLabels).item()


PROGRESS_VARIABLE = "S5_PROGRESS"


def watched_notebook():
    """Whether this runs in a notebook that a person has open: JupyterLab and Notebook 7 (jupyter_server
    gives its kernels JPY_SESSION_NAME), VS Code (which defines __vsc_ipynb_file__), Colab, or an
    interactive Kaggle notebook. papermill and nbconvert start their kernels with none of these."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython else None
    if shell is None or "IPKernelApp" not in getattr(shell, "config", {}):
        return False
    return bool(os.environ.get("JPY_SESSION_NAME") or "__vsc_ipynb_file__" in shell.user_ns
                or "google.colab" in sys.modules or os.environ.get("KAGGLE_KERNEL_RUN_TYPE") == "Interactive")


def live_progress():
    """Whether the bars refresh during the epoch: where a person watches them, that is with ipywidgets'
    bars, on a terminal, or in a notebook a person has open (watched_notebook; text bars there). Elsewhere,
    in papermill's notebooks, CI logs and files, every refresh would be kept, so each epoch writes one
    final line. S5_PROGRESS=live or S5_PROGRESS=final decides instead."""
    chosen = os.environ.get(PROGRESS_VARIABLE)
    if chosen:
        if chosen not in ("live", "final"):
            raise ValueError(f"{PROGRESS_VARIABLE}={chosen!r} is not understood: set it to live or final, or unset it")
        return chosen == "live"
    widgets = any(cls.__module__ == "tqdm.notebook" for cls in tqdm.__mro__)
    return widgets or sys.stderr.isatty() or watched_notebook()


def _check_finite(losses, first, last, epoch):
    """Raises FloatingPointError naming the first batch in first..last whose loss is not finite."""
    bad = torch.nonzero(~torch.isfinite(losses[first:last + 1])).flatten()
    if len(bad):
        batch = first + bad[0].item()
        where = f"epoch {epoch}, batch {batch}" if epoch is not None else f"batch {batch}"
        raise FloatingPointError(
            f"Training loss became {losses[batch].item()} at {where}: training stopped. Lower the learning "
            "rate, or check that the inputs are normalized and contain no NaN.")


def train(model, device, train_loader, optimizer, criterion, amp_dtype=None, epoch=None, scaler=None, train_step=None):
    """One epoch of training; returns (accuracy in %, mean loss per batch).

    amp_dtype: run forward and loss under autocast in that dtype (fast.fast_amp_dtype picks it).
    scaler: a torch.amp.GradScaler, which float16 needs (fast.grad_scaler).
    train_step: None, or a function that runs one whole step (forward, loss, backward, optimizer step) on each
    item of train_loader and returns (loss, prediction, target); train then only keeps the score. The fast
    path's CUDA graph is one (fast.Training.train_step), its train_loader yielding the batches' indices.
    A loss that is not finite stops training, naming the epoch and the batch. The loop reads values
    back from the device only when it shows them: on the CPU that is free, so it looks at every
    batch and a bad one never reaches the weights; on a GPU it looks when the bar refreshes and at
    the end of the epoch, so that the GPU never waits for the host."""
    model.train()
    device = torch.device(device)
    live = live_progress()
    pbar = tqdm(train_loader, delay=0 if live else math.inf)  # not live: printed once, below
    print_at_end = not live and not pbar.disable  # the bar disables itself when it closes
    losses = torch.zeros(len(train_loader), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    processed, checked, shown_at = 0, 0, time.monotonic()
    for batch_idx, batch in enumerate(pbar):
        if train_step:
            loss, pred, target = train_step(batch)
        else:
            data, target = (t.to(device, non_blocking=True) for t in batch)
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, amp_dtype):
                pred = model(data)
                loss = criterion(pred, target)
        losses[batch_idx] = loss.detach()
        correct += count_correct(pred, target)
        processed += len(target)
        last = batch_idx == len(losses) - 1
        if device.type == "cpu" or last or (live and time.monotonic() - shown_at >= pbar.mininterval):
            _check_finite(losses, checked, batch_idx, epoch)
            checked, shown_at = batch_idx + 1, time.monotonic()
            pbar.set_description(f"Train: Loss={losses[batch_idx].item():0.4f} Batch_id={batch_idx} "
                                 f"Accuracy={100 * correct.item() / processed:0.2f}", refresh=False)
        if train_step:
            continue
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
    if print_at_end:  # one write with its newline: a kernel may send a lone newline after the next stdout line
        sys.stderr.write(f"{pbar}\n")
        sys.stderr.flush()
    return 100 * correct.item() / processed, losses.sum().item() / len(losses)


def test(model, device, test_loader, criterion, incorrect_pred=None, amp_dtype=None):
    """Evaluates the model; prints the original's line and returns (accuracy in %, mean loss per sample).

    incorrect_pred: the notebook's {'images': [], 'ground_truths': [], 'predicted_vals': []}; when
    given, it is refilled with this evaluation's misclassified samples (and their 'probabilities').
    Sums stay on the device until the end, so a GPU is never made to wait batch by batch."""
    model.eval()
    device = torch.device(device)
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    count, batches = 0, []
    with torch.inference_mode(), autocast(device, amp_dtype):
        for data, target in test_loader:
            data, target = data.to(device, non_blocking=True), target.to(device, non_blocking=True)
            output = model(data)
            total_loss += criterion(output, target).float() * len(data)  # criterion averages the batch
            correct += count_correct(output, target)
            count += len(data)
            if incorrect_pred is not None:
                batches.append((data, target, output))
    if incorrect_pred is not None:
        _fill_incorrect(incorrect_pred, batches)
    test_loss, correct = total_loss.item() / count, correct.item()
    print(f"\nTest set: Average loss: {test_loss:.4f}, Accuracy: {correct}/{count} "
          f"({100. * correct / count:.2f}%)\n")
    return 100. * correct / count, test_loss


def _fill_incorrect(incorrect_pred, batches):
    data = torch.cat([d for d, _, _ in batches])
    target = torch.cat([t for _, t, _ in batches])
    best_prob, predicted = torch.cat([o for _, _, o in batches]).float().softmax(dim=1).max(dim=1)
    wrong = predicted.ne(target)
    incorrect_pred["images"] = list(data[wrong].float().cpu())
    incorrect_pred["ground_truths"] = target[wrong].tolist()
    incorrect_pred["predicted_vals"] = predicted[wrong].tolist()
    incorrect_pred["probabilities"] = best_prob[wrong].tolist()


def plot_loss(train_losses, train_acc, test_losses, test_acc):
    """The original's 2x2 figure of losses and accuracies per epoch; returns the figure."""
    fig, axs = plt.subplots(2, 2, figsize=(15, 10))
    for ax, values, title in [(axs[0, 0], train_losses, "Training Loss"),
                              (axs[0, 1], train_acc, "Training Accuracy"),
                              (axs[1, 0], test_losses, "Test Loss"),
                              (axs[1, 1], test_acc, "Test Accuracy")]:
        ax.plot(values)
        ax.set_title(title)
        ax.set_xlabel("epoch")
    return fig


def plot_incorrect(incorrect_pred, count=20, cols=5):
    """A grid of misclassified digits, each titled 'label -> prediction (probability)'."""
    count = min(count, len(incorrect_pred["images"]))
    fig, axes = digit_grid(count, cols)
    for i, ax in enumerate(axes):
        ax.imshow(incorrect_pred["images"][i].squeeze(0).numpy(), cmap="gray")
        ax.set_title(f"{incorrect_pred['ground_truths'][i]} -> {incorrect_pred['predicted_vals'][i]}"
                     f" ({incorrect_pred['probabilities'][i]:.2f})")
    fig.suptitle(f"{len(incorrect_pred['images'])} misclassified test digits: label -> prediction (probability)")
    fig.tight_layout()
    return fig


def get_confusion_matrix(model, device, loader, amp_dtype=None):
    """10x10 tensor of counts: row = true digit, column = predicted digit."""
    model.eval()
    matrix = torch.zeros(10, 10, dtype=torch.int64)
    with torch.inference_mode(), autocast(device, amp_dtype):
        for data, target in loader:
            predicted = model(data.to(device)).argmax(dim=1).cpu()
            matrix += torch.bincount(target.cpu() * 10 + predicted, minlength=100).view(10, 10)
    return matrix


def per_class_accuracy(matrix):
    """Accuracy in % of each true digit, from a confusion matrix."""
    return 100.0 * matrix.diag().float() / matrix.sum(dim=1).clamp(min=1).float()


def plot_confusion_matrix(matrix):
    """The confusion matrix with its counts, beside the accuracy of each digit; returns the figure."""
    fig, (ax, bar) = plt.subplots(1, 2, figsize=(14, 6), gridspec_kw={"width_ratios": [3, 2]})
    shade = matrix.float().log1p()  # a log scale, so that the few mistakes show beside the diagonal
    ax.imshow(shade.numpy(), cmap="Blues")
    threshold = shade.max().item() / 2
    for true in range(10):
        for pred in range(10):
            value = matrix[true, pred].item()
            ax.text(pred, true, str(value), ha="center", va="center", fontsize=8,
                    color="white" if math.log1p(value) > threshold else "black")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title("Confusion matrix (test set)")
    accuracy = per_class_accuracy(matrix)
    bar.barh(range(10), accuracy.tolist(), color="tab:blue")
    for digit, value in enumerate(accuracy.tolist()):
        bar.text(value, digit, f" {value:.2f}%", va="center", fontsize=8)
    bar.set_xlim(max(0.0, accuracy.min().item() - 2), 100.5)
    bar.set_yticks(range(10))
    bar.invert_yaxis()
    bar.set_xlabel("accuracy (%)")
    bar.set_title("Accuracy per digit")
    fig.tight_layout()
    return fig


def get_summary(Net, input_size=(1, 28, 28)):
    """Prints torchsummary's table for a model class or instance; returns the parameter count.

    The table is made on a CPU copy, because torchsummary only knows 'cuda' and 'cpu' and
    defaults to 'cuda'."""
    model = Net() if isinstance(Net, type) else copy.deepcopy(Net)
    model = model.to("cpu", memory_format=torch.contiguous_format)
    summary(model, input_size, device="cpu")
    return sum(p.numel() for p in model.parameters())
