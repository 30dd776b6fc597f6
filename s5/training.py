"""How a network is trained and scored: the recipe, one training step, and the epoch loops with their progress bars.

Every way of training (the original pipeline, the fast path, a CUDA graph replay) runs the same Step; `train` only
loops over the batches, shows progress and keeps the score."""
import argparse
import dataclasses
import json
import math
import os
import sys
import time
import warnings

import torch
import torch.nn as nn

from s5.data import ROTATION

with warnings.catch_warnings():
    # Without ipywidgets, tqdm.auto warns and falls back to text bars, which is what we want in
    # headless runs (the committed notebook's log); with ipywidgets, Jupyter shows widget bars.
    warnings.simplefilter("ignore")
    from tqdm.auto import tqdm

OPTIMIZERS = ("sgd", "adam")
HISTORY = ("train_losses", "train_acc", "test_losses", "test_acc", "epoch_seconds")  # a run's lists, one value an epoch
PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}  # None: plain float32
SCHEDULERS = ("step", "onecycle")


def changed(base, changes, what):
    """`base` (a frozen dataclass: a Recipe, a budget.Budget) with `changes`, a dict of its fields or that dict as
    JSON text (papermill's -p passes a dict as text). ValueError in one sentence for anything else; `what` names
    base in it."""
    given = changes
    if isinstance(changes, str):
        try:
            changes = json.loads(changes)
        except json.JSONDecodeError:
            pass  # refused below
    fields = [field.name for field in dataclasses.fields(base)]
    if not isinstance(changes, dict):
        raise ValueError(f"The {what}'s changes must be a dict of its fields, such as {{{fields[0]!r}: "
                         f"{getattr(base, fields[0])!r}}}, not {given!r}")
    unknown = sorted(set(changes) - set(fields))
    if unknown:
        raise ValueError(f"The {what} has no {', '.join(unknown)}: change {', '.join(fields)}")
    return dataclasses.replace(base, **changes)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The numbers and choices a training run is made of; the defaults are the original's recipe.

    scheduler 'step' is StepLR (lr times gamma every step_size epochs, stepped once an epoch); 'onecycle' is
    OneCycleLR with lr as its peak, stepped after every batch. momentum is SGD's (Adam ignores it). rotation: the
    train augmentation's random rotation, up to this many degrees each way; the fast path draws it from the recipe,
    the original pipeline from its loader's transforms (data.train_augmentation(rotation) builds them)."""
    epochs: int = 20
    batch_size: int = 512
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    scheduler: str = "step"
    step_size: int = 15
    gamma: float = 0.1
    rotation: float = ROTATION

    def __post_init__(self):
        for name, allowed in (("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"Unknown {name} {getattr(self, name)!r}: use one of {', '.join(allowed)}")
        for name in ("epochs", "batch_size", "lr", "step_size"):
            if not getattr(self, name) > 0:
                raise ValueError(f"The recipe's {name} must be above 0, not {getattr(self, name)!r}")
        if not 0 <= self.rotation <= 180:
            raise ValueError(f"The recipe's rotation must be from 0 to 180 degrees, not {self.rotation!r}")

    @classmethod
    def of(cls, network, fallback=None):
        """The recipe a network class carries as its attribute `recipe`: a Recipe, or a dict of Recipe's fields (so
        that a file of networks need not import this module); `fallback` (default: the original's) for one that
        carries none. ValueError in one sentence for a field Recipe does not have."""
        carried = getattr(network, "recipe", None)
        if carried is None:
            return fallback or cls()
        if isinstance(carried, cls):
            return carried
        return changed(cls(), dict(carried), f"{network.__name__}.recipe")

    @property
    def per_batch(self):
        """Whether the scheduler steps after every batch (OneCycleLR) rather than once an epoch (StepLR)."""
        return self.scheduler == "onecycle"

    def make_optimizer(self, parameters, lr_tensor=False):
        """lr_tensor: the learning rate as a tensor on the parameters' device, which a CUDA graph reads in place
        and the schedulers fill in place; the fused SGD is the one that reads it there without the host."""
        parameters = list(parameters)
        if self.optimizer == "adam":
            return torch.optim.Adam(parameters, lr=self.lr)
        if lr_tensor:
            return torch.optim.SGD(parameters, lr=torch.tensor(self.lr, device=parameters[0].device),
                                   momentum=self.momentum, fused=True)
        return torch.optim.SGD(parameters, lr=self.lr, momentum=self.momentum)

    def make_scheduler(self, optimizer, steps_per_epoch):
        if self.per_batch:
            return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=self.lr, epochs=self.epochs,
                                                       steps_per_epoch=steps_per_epoch)
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=self.step_size, gamma=self.gamma)

    @staticmethod
    def make_criterion():
        return nn.CrossEntropyLoss()


def precision_name(amp_dtype):
    return {dtype: name for name, dtype in PRECISIONS.items()}[amp_dtype]


def autocast(device, amp_dtype, cache_enabled=True):
    """torch.autocast in `amp_dtype` on `device`'s type; with amp_dtype None a context that changes nothing.
    cache_enabled=False for a captured CUDA graph, whose replays would read a stale cache of cast weights."""
    return torch.autocast(torch.device(device).type, dtype=amp_dtype, enabled=amp_dtype is not None,
                          cache_enabled=cache_enabled)


class Step:
    """One training step on a (data, target) batch: forward and loss (under autocast in amp_dtype), backward
    (through the gradient scaler that float16 needs), the optimizer's step and, for OneCycleLR, the scheduler's.
    Calling it returns (loss, prediction, target), detached; the phases are methods so that benchmark.py can time
    each one."""

    def __init__(self, model, device, optimizer, criterion, amp_dtype=None, scaler=None, scheduler=None,
                 cache_enabled=True):
        self.model, self.device, self.optimizer, self.criterion = model, torch.device(device), optimizer, criterion
        self.amp_dtype, self.scaler, self.scheduler, self.cache_enabled = amp_dtype, scaler, scheduler, cache_enabled

    def forward(self, data, target):
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.amp_dtype, self.cache_enabled):
            prediction = self.model(data)
            return self.criterion(prediction, target), prediction

    def backward(self, loss):
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def update(self):
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()

    def __call__(self, batch):
        data, target = (t.to(self.device, non_blocking=True) for t in batch)
        loss, prediction = self.forward(data, target)
        # On the CPU looking costs nothing, so a loss that is not finite never reaches the weights (train names it)
        if self.device.type != "cpu" or torch.isfinite(loss):
            self.backward(loss)
            self.update()
        return loss.detach(), prediction.detach(), target


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


def count_correct(prediction, labels):
    """How many rows of `prediction` have their largest value at the label, as a tensor on their device."""
    return prediction.argmax(dim=1).eq(labels).sum()


def _check_finite(losses, first, last, epoch):
    """Raises FloatingPointError naming the first batch in first..last whose loss is not finite."""
    bad = torch.nonzero(~torch.isfinite(losses[first:last + 1])).flatten()
    if len(bad):
        batch = first + bad[0].item()
        where = f"epoch {epoch}, batch {batch}" if epoch is not None else f"batch {batch}"
        raise FloatingPointError(
            f"Training loss became {losses[batch].item()} at {where}: training stopped. Lower the learning "
            "rate, or check that the inputs are normalized and contain no NaN.")


def train(model, device, train_loader, optimizer, criterion, step=None, epoch=None):
    """One epoch of training; returns (accuracy in %, mean loss per batch).

    step: what runs on each item of train_loader and returns (loss, prediction, target); by default the plain
    Step(model, device, optimizer, criterion), the original's. The fast path hands its own (fast.Training.step).
    A loss that is not finite stops training, naming the epoch and the batch. Values are read back from the
    device only when shown: on the CPU that is free, so every batch is looked at; on a GPU, when the bar
    refreshes and at the end, so that the GPU never waits for the host."""
    model.train()
    device = torch.device(device)
    step = step or Step(model, device, optimizer, criterion)
    live = live_progress()
    pbar = tqdm(train_loader, delay=0 if live else math.inf)  # not live: printed once, below
    print_at_end = not live and not pbar.disable  # the bar disables itself when it closes
    losses = torch.zeros(len(train_loader), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    processed, checked, shown_at = 0, 0, time.monotonic()
    for batch_idx, batch in enumerate(pbar):
        loss, pred, target = step(batch)
        losses[batch_idx] = loss
        correct += count_correct(pred, target)
        processed += len(target)
        last = batch_idx == len(losses) - 1
        if device.type == "cpu" or last or (live and time.monotonic() - shown_at >= pbar.mininterval):
            _check_finite(losses, checked, batch_idx, epoch)
            checked, shown_at = batch_idx + 1, time.monotonic()
            pbar.set_description(f"Train: Loss={losses[batch_idx].item():0.4f} Batch_id={batch_idx} "
                                 f"Accuracy={100 * correct.item() / processed:0.2f}", refresh=False)
    if print_at_end:  # one write with its newline: a kernel may send a lone newline after the next stdout line
        sys.stderr.write(f"{pbar}\n")
        sys.stderr.flush()
    return 100 * correct.item() / processed, losses.sum().item() / len(losses)


def evaluate(model, device, test_loader, criterion, incorrect_pred=None, amp_dtype=None):
    """(correct, count, mean loss per sample) over test_loader, in eval mode; sums stay on the device until the
    end, so that a GPU never waits batch by batch. incorrect_pred: see test."""
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
    return correct.item(), count, total_loss.item() / count


def test(model, device, test_loader, criterion, incorrect_pred=None, amp_dtype=None):
    """Evaluates the model; prints the original's line and returns (accuracy in %, mean loss per sample).

    incorrect_pred: the notebook's {'images': [], 'ground_truths': [], 'predicted_vals': []}; when
    given, it is refilled with this evaluation's misclassified samples (and their 'probabilities')."""
    correct, count, test_loss = evaluate(model, device, test_loader, criterion, incorrect_pred, amp_dtype)
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


class EpochScheduler:
    """The scheduler as an epoch loop sees it, so that no loop asks which kind it is: step() at an epoch's end steps a
    StepLR, and leaves alone a OneCycleLR, which the Step has stepped after every batch."""

    def __init__(self, scheduler, per_batch):
        self.scheduler, self.per_batch = scheduler, per_batch

    def step(self):
        if not self.per_batch:
            self.scheduler.step()

    def get_last_lr(self):
        return self.scheduler.get_last_lr()

    def state_dict(self):
        return self.scheduler.state_dict()

    def load_state_dict(self, state):
        self.scheduler.load_state_dict(state)


@dataclasses.dataclass
class Training:
    """A run's parts, made by a pipeline's door (OriginalPipeline, fast.FastPath) and trained epoch after epoch by
    fit, the one loop, or by the notebook's cell, which shows the original's:

        for epoch in range(1, recipe.epochs + 1):
            train(t.model, device, t.batches, t.optimizer, t.criterion, t.step, epoch)
            test(t.model, device, t.test_loader, t.criterion, amp_dtype=t.amp_dtype)
            t.scheduler.step()

    scheduler: an EpochScheduler; step: what runs each whole step (a Step, or a CUDA graph replay); batches: what it
    takes, batch after batch (for a CUDA graph, the indices of each batch). precision names amp_dtype: 'bf16', 'fp16'
    or 'fp32'; precision_reason says why it was chosen (fast.precision_choice). history: fit's lists (HISTORY)."""
    model: nn.Module
    device: torch.device
    optimizer: torch.optim.Optimizer
    scheduler: EpochScheduler
    criterion: nn.Module
    step: object
    batches: object
    test_loader: object
    amp_dtype: object = None
    cuda_graph: bool = False
    precision_reason: str = "fp32: the original's"
    history: dict = dataclasses.field(default_factory=lambda: {key: [] for key in HISTORY})

    @property
    def precision(self):
        return precision_name(self.amp_dtype)

    @classmethod
    def plain(cls, model, device, train_loader, test_loader, recipe=Recipe()):
        """The original pipeline's: the recipe for `model` as it is, float32 steps on whatever train_loader yields."""
        optimizer = recipe.make_optimizer(model.parameters())
        scheduler = recipe.make_scheduler(optimizer, len(train_loader))
        criterion = recipe.make_criterion()
        step = Step(model, device, optimizer, criterion, scheduler=scheduler if recipe.per_batch else None)
        return cls(model, torch.device(device), optimizer, EpochScheduler(scheduler, recipe.per_batch), criterion,
                   step, train_loader, test_loader)

    def fit(self, epochs, report=None):
        """The one loop over a whole run: each epoch trains, tests, steps the scheduler and adds its figures and its
        seconds to history, then tells report(epoch, test accuracy in %). An interrupted fit keeps the epochs that
        finished; calling it again goes on from there."""
        for epoch in range(len(self.history["test_acc"]) + 1, epochs + 1):
            start = time.perf_counter()
            train_acc, train_loss = train(self.model, self.device, self.batches, self.optimizer, self.criterion,
                                          self.step, epoch)
            correct, count, test_loss = evaluate(self.model, self.device, self.test_loader, self.criterion,
                                                 amp_dtype=self.amp_dtype)
            self.scheduler.step()
            for key, value in zip(HISTORY, (train_loss, train_acc, test_loss, 100 * correct / count,
                                            time.perf_counter() - start)):
                self.history[key].append(value)
            if report:
                report(epoch, 100 * correct / count)
        return self.history


class OriginalPipeline:
    """The original's way of training behind the same door as fast.FastPath: its DataLoaders (shuffled, two worker
    processes), then training(model, recipe) makes the run's parts in float32 (precision is the fast path's)."""

    def __init__(self, train_data, test_data, device, batch_size):
        self.device = torch.device(device)
        kwargs = {"batch_size": batch_size, "shuffle": True, "num_workers": 2, "pin_memory": self.device.type == "cuda"}
        self.train_loader = torch.utils.data.DataLoader(train_data, **kwargs)
        self.test_loader = torch.utils.data.DataLoader(test_data, **kwargs)

    def training(self, model, recipe=Recipe(), precision=None):
        return Training.plain(model.to(self.device), self.device, self.train_loader, self.test_loader, recipe)


def pipeline(train_data, test_data, device, batch_size, fast=False):
    """The door of the fast path (fast.FastPath) or of the original pipeline: the loaders first, then
    .training(model, recipe, precision)."""
    if fast:
        from s5.fast import FastPath  # fast.py builds on this module
        return FastPath(train_data, test_data, device, batch_size)
    return OriginalPipeline(train_data, test_data, device, batch_size)


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


def add_recipe_options(parser, fallback=Recipe()):
    """The recipe's options for a command. Each one given changes the network's own recipe (Recipe.of), or
    `fallback`'s for a network that carries none; the help shows fallback's values."""
    group = parser.add_argument_group("the recipe (default: the one the network carries, else the original's "
                                      "with the values below)")

    def option(flag, help, **kwargs):
        name = flag[2:].replace("-", "_")
        group.add_argument(flag, default=argparse.SUPPRESS, help=f"{help} ({getattr(fallback, name)})", **kwargs)
    option("--epochs", "epochs", type=int)
    option("--batch-size", "batch size", type=int)
    option("--optimizer", "sgd or adam", choices=OPTIMIZERS)
    option("--lr", "learning rate, OneCycleLR's peak", type=float)
    option("--momentum", "SGD's", type=float)
    option("--scheduler", "step: StepLR; onecycle: OneCycleLR", choices=SCHEDULERS)
    option("--step-size", "StepLR's", type=int)
    option("--gamma", "StepLR's", type=float)
    option("--rotation", "the augmentation's random rotation, degrees each way", type=float)


def recipe_from_args(args, base=Recipe()):
    """`base` with the changes add_recipe_options' options name (ValueError in one sentence when one is out of
    range)."""
    return dataclasses.replace(base, **{field.name: getattr(args, field.name) for field in dataclasses.fields(Recipe)
                                        if hasattr(args, field.name)})
