"""What this machine and this Python offer the project: the device to train on, the packages' versions, and one
sentence naming the install command when a package is missing."""
import importlib
import os
import platform
import re

import torch

# The oldest versions the tests pass on (requirements/floor.txt; a test keeps the two in step).
FLOORS = {"torch": "2.6", "torchvision": "0.21"}


def _release(version):
    return tuple(int(part) for part in re.findall(r"\d+", version)[:2])  # a local label follows major.minor


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


def get_device():
    """CUDA if there is a GPU, else Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cores():
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def machine(device="cpu"):
    """What a run was trained on, in one line: the CPU's name (or the GPU's), PyTorch's version."""
    device = torch.device(device)
    if device.type == "cuda":
        chip = torch.cuda.get_device_name(device)
    else:
        chip = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as cpuinfo:  # Linux names the CPU's model there
                chip = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
                            chip)
        except OSError:
            pass
    threads = torch.get_num_threads()
    return f"{chip}, {threads} thread{'s' * (threads != 1)}, PyTorch {torch.__version__}, {device.type}"
