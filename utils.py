"""Training and evaluation helpers for the S5 notebook, with the original's names and signatures.

`from utils import *` gives device, train, test, plot_loss, get_summary, GetCorrectPredCount and plt,
as the original notebook expects, plus the evaluation pictures."""
import copy
import ctypes
import math
import sys
import warnings

import matplotlib.pyplot as plt
import torch
from torchsummary import summary

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


def keep_freed_memory():
    """Stops glibc from handing large freed blocks back to the kernel (Linux only; elsewhere a no-op).

    A training step on the CPU allocates activations of tens of MB and frees them again; by default
    glibc maps each one fresh from the kernel, and on 2 cores the page faults that follow take a
    large share of the step. Keeping freed memory in the heap removes them."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2 ** 30))
    except (OSError, AttributeError):  # not glibc
        return False


def prepare_fast(model, device):
    """The fast path's model settings: channels_last weights and the autocast dtype to train with
    (see fast_amp_dtype); on the CPU also keep_freed_memory. Returns (model, amp_dtype)."""
    if torch.device(device).type == "cpu":
        keep_freed_memory()
    return model.to(memory_format=torch.channels_last), fast_amp_dtype(device)


def fast_amp_dtype(device):
    """bfloat16 where autocast runs it natively (CUDA, CPUs with AVX-512 bf16 or AMX), else None."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return None


def _autocast(device, amp_dtype):
    return torch.autocast(torch.device(device).type, dtype=amp_dtype, enabled=amp_dtype is not None)


def GetCorrectPredCount(pPrediction, pLabels):
    return pPrediction.argmax(dim=1).eq(pLabels).sum().item()


def train(model, device, train_loader, optimizer, criterion, amp_dtype=None, epoch=None):
    """One epoch of training; returns (accuracy in %, mean loss per batch).

    amp_dtype: run forward and loss under autocast in that dtype (the fast path uses bfloat16).
    A loss that is not finite stops training before it reaches the weights."""
    model.train()
    pbar = tqdm(train_loader)
    total_loss, correct, processed = 0.0, 0, 0
    for batch_idx, (data, target) in enumerate(pbar):
        data, target = data.to(device, non_blocking=True), target.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, amp_dtype):
            pred = model(data)
            loss = criterion(pred, target)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            where = f"epoch {epoch}, batch {batch_idx}" if epoch is not None else f"batch {batch_idx}"
            raise FloatingPointError(
                f"Training loss became {loss_value} at {where}: training stopped. Lower the learning "
                "rate, or check that the inputs are normalized and contain no NaN.")
        loss.backward()
        optimizer.step()

        total_loss += loss_value
        correct += GetCorrectPredCount(pred, target)
        processed += len(data)
        pbar.set_description(
            f"Train: Loss={loss_value:0.4f} Batch_id={batch_idx} Accuracy={100 * correct / processed:0.2f}")
    return 100 * correct / processed, total_loss / len(train_loader)


def test(model, device, test_loader, criterion, incorrect_pred=None, amp_dtype=None):
    """Evaluates the model; prints the original's line and returns (accuracy in %, mean loss per sample).

    incorrect_pred: the notebook's {'images': [], 'ground_truths': [], 'predicted_vals': []}; when
    given, it is refilled with this evaluation's misclassified samples (and their 'probabilities')."""
    model.eval()
    if incorrect_pred is not None:
        for key in ("images", "ground_truths", "predicted_vals", "probabilities"):
            incorrect_pred[key] = []
    total_loss, correct, count = 0.0, 0, 0
    with torch.inference_mode(), _autocast(device, amp_dtype):
        for data, target in test_loader:
            data, target = data.to(device, non_blocking=True), target.to(device, non_blocking=True)
            output = model(data)
            total_loss += criterion(output, target).item() * len(data)  # criterion averages the batch
            correct += GetCorrectPredCount(output, target)
            count += len(data)
            if incorrect_pred is not None:
                _collect_incorrect(incorrect_pred, data, target, output)
    test_loss = total_loss / count
    print(f"\nTest set: Average loss: {test_loss:.4f}, Accuracy: {correct}/{count} "
          f"({100. * correct / count:.2f}%)\n")
    return 100. * correct / count, test_loss


def _collect_incorrect(incorrect_pred, data, target, output):
    probs = output.float().softmax(dim=1)
    best_prob, predicted = probs.max(dim=1)
    wrong = predicted.ne(target).cpu()
    incorrect_pred["images"].extend(data[wrong.to(data.device)].float().cpu())
    incorrect_pred["ground_truths"].extend(target.cpu()[wrong].tolist())
    incorrect_pred["predicted_vals"].extend(predicted.cpu()[wrong].tolist())
    incorrect_pred["probabilities"].extend(best_prob.cpu()[wrong].tolist())


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
    rows = max(1, math.ceil(count / cols))
    fig, axs = plt.subplots(rows, cols, figsize=(2 * cols, 2.3 * rows), squeeze=False)
    for i, ax in enumerate(axs.flat):
        ax.axis("off")
        if i < count:
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
    with torch.inference_mode(), _autocast(device, amp_dtype):
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
