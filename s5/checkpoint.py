"""Saving and resuming training: the weights, optimizer, scheduler, gradient scaler, epoch, history and random
states; and the record of a finished run, which S5.ipynb writes and the commands read (save_record, read_record).

Writes are atomic (a temporary file in the same folder, then a rename), and loading goes through
torch.load(weights_only=True), so a checkpoint can carry tensors and plain data but never code."""
import dataclasses
import os
import tempfile

import torch


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, damaged, unsafe or made for another network."""


def rng_states():
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states):
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def load_failure(error):
    """What went wrong in torch.load, in a few words: for the weights-only unpickler the object it refused
    (e.g. 'Unsupported global: GLOBAL io.open') from its dozen lines of advice; else the first line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if any("Weights only load failed" in line for line in lines):
        lines = [line.split("WeightsUnpickler error:", 1)[1].split(" was not an allowed global")[0].strip()
                 for line in lines if "WeightsUnpickler error:" in line]
    return lines[0] if lines and lines[0] else type(error).__name__


def fit_failure(error, few=3):
    """What load_state_dict's error says is wrong, in one line: its missing and unexpected keys, a few of each,
    and its size mismatches, a few of them, without PyTorch's header line."""
    parts, mismatches = [], []
    for line in str(error).splitlines()[1:]:
        line = line.strip().rstrip(". ")
        kind, _, keys = line.partition(" in state_dict: ")
        if keys:
            names = [key.strip() for key in keys.split(",")]
            more = f" and {len(names) - few} more" if len(names) > few else ""
            parts.append(f"{kind.lower()} {', '.join(names[:few])}{more}")
        elif line:
            mismatches.append(line)
    parts += mismatches[:few] + ([f"{len(mismatches) - few} more size mismatches"] if len(mismatches) > few else [])
    return "; ".join(parts) or first_line(error) or type(error).__name__


def first_line(error):
    """An exception's message, its first line only ('' when it has none)."""
    return (str(error).strip().splitlines() or [""])[0]


def output_file(path, how):
    """`path`, checked before any work that ends in writing it: ValueError in one sentence, saying how to name another
    (`how`, e.g. "with --output"), when it is a folder or lies in a folder that does not exist."""
    if os.path.isdir(path) or not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise ValueError(f"{path} is a folder or lies in a folder that does not exist: name a file in an existing "
                         f"folder {how}")
    return path


def write_atomically(path, write):
    """Calls write(f) on a temporary file beside `path`, then renames it onto `path`: a crash or an error
    midway leaves the previous file whole and no half-written one. The file gets the umask's permissions."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; these are ordinary files
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_checkpoint(path, model, optimizer=None, scheduler=None, epoch=None, history=None, scaler=None, **extra):
    """Writes everything needed to resume after `epoch`; the previous file survives a crash mid-write.

    history: e.g. {'train_losses': [...], 'train_acc': [...], 'test_losses': [...], 'test_acc': [...]}.
    scaler: the fp16 path's torch.amp.GradScaler, whose loss scale a resumed run needs.
    extra: more plain values to keep (e.g. test_accuracy=99.3)."""
    state = {"model": model.state_dict(), "epoch": epoch, "history": history, "rng": rng_states(), **extra}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    if scaler is not None and scaler.is_enabled():
        state["scaler"] = scaler.state_dict()
    write_atomically(path, lambda f: torch.save(state, f))


def load_checkpoint(path, model=None, optimizer=None, scheduler=None, map_location="cpu", restore_rng=False,
                    scaler=None):
    """Reads a checkpoint safely and loads it into whatever objects are given; returns the dict.

    A bare state dict (torch.save(model.state_dict(), path)) is accepted too.
    restore_rng=True also restores the random generators, for an exact resume."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"No checkpoint at {path}: check the path, or train one with S5.ipynb") from None
    except Exception as e:  # junk fails inside torch.load in many ways: zip, pickle, key, EOF errors
        reason = load_failure(e)
        if reason.startswith("Unsupported global"):
            raise CheckpointError(
                f"Refused to load {path}: it carries Python objects that could run code when unpickled "
                f"({reason}). Save checkpoints with checkpoint.save_checkpoint or "
                "torch.save(model.state_dict(), path).") from None
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt: {reason}); "
                              "save it again or use another file") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a checkpoint dict or a state dict")
    if "model" not in state:
        state = {"model": state}
    if model is not None:
        try:
            model.load_state_dict(state["model"])
        except (RuntimeError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointError(
                f"{path} does not fit {type(model).__name__} ({fit_failure(e)}): it was saved from another network; "
                "use weights trained for this one") from None
    if scaler is not None and "scaler" in state:
        scaler.load_state_dict(state["scaler"])
    for name, target in (("optimizer", optimizer), ("scheduler", scheduler)):
        if target is not None:
            if name not in state:
                raise CheckpointError(f"{path} holds no {name} state, so training cannot resume from it; "
                                      f"load it without the {name}, or save checkpoints with save_checkpoint")
            target.load_state_dict(state[name])
    if restore_rng and "rng" in state:
        set_rng_states(state["rng"])
    return state


RECORD_KEYS = ("network", "parameters", "recipe", "history", "test_accuracy", "seed", "fast", "precision",
               "cuda_graph", "train_seconds")


def save_record(path, model, history, *, network, recipe, seed, fast, precision, cuda_graph, train_seconds,
                **extra):
    """The record of a finished run (what S5.ipynb saves at its end), a checkpoint that predict.py reads too:
    the weights; network, the module:Class they belong to, and parameters, its parameter count; recipe, the
    training.Recipe as a dict; epoch, the number of epochs; history, lists with a value per epoch (train_losses,
    train_acc, test_losses, test_acc, epoch_seconds); test_accuracy, the last epoch's in %; seed; fast (True for
    the fast path); precision ('bf16', 'fp16' or 'fp32'); cuda_graph (True where each step was a CUDA graph
    replay); train_seconds (the loop over the epochs); machine, the CPU, PyTorch's version and the device trained on
    (env.machine); extra: more plain values, such as the budget a run was checked against (budget.py)."""
    from s5.env import machine
    save_checkpoint(path, model, epoch=len(history["test_acc"]), history=history,
                    test_accuracy=history["test_acc"][-1], network=network,
                    parameters=sum(p.numel() for p in model.parameters()), recipe=dataclasses.asdict(recipe),
                    seed=seed, fast=fast, precision=precision, cuda_graph=cuda_graph, train_seconds=train_seconds,
                    machine=machine(next(model.parameters()).device), **extra)


def read_record(path):
    """The record save_record wrote at `path`, as a dict (see save_record); CheckpointError when it is not one."""
    state = load_checkpoint(path)
    missing = [key for key in RECORD_KEYS if state.get(key) is None]
    if missing:
        raise CheckpointError(f"{path} is not the record of an S5.ipynb run (it has no {', '.join(missing)}): "
                              "read it with load_checkpoint, or run the notebook to make one")
    return state
