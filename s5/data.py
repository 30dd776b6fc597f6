"""MNIST as the original reads it: its PIL transforms, the normalization, and an offline-safe loader."""
import contextlib
import io
import os
import shutil
import tempfile

import torch
from torchvision import datasets, transforms

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
# name -> (size in bytes, idx magic number); the four files torchvision reads from MNIST/raw
RAW_FILES = {
    "train-images-idx3-ubyte": (16 + 60000 * 28 * 28, 2051),
    "train-labels-idx1-ubyte": (8 + 60000, 2049),
    "t10k-images-idx3-ubyte": (16 + 10000 * 28 * 28, 2051),
    "t10k-labels-idx1-ubyte": (8 + 10000, 2049),
}
ROTATION = 15.0  # degrees each way: the original's random rotation, the default wherever a rotation is asked


def train_augmentation(rotation=ROTATION):
    """The original notebook's train transforms, with its random rotation of up to `rotation` degrees each way (15
    in the original; training.Recipe's rotation)."""
    return transforms.Compose([
        transforms.RandomApply([transforms.CenterCrop(22)], p=0.1),  # sometimes zoom in on the centre
        transforms.Resize((28, 28)),
        transforms.RandomRotation((-rotation, rotation), fill=0),
        transforms.ToTensor(),
        transforms.Normalize((MNIST_MEAN,), (MNIST_STD,)),
    ])


# The original notebook's transforms, unchanged.
train_transforms = train_augmentation()
test_transforms = transforms.Compose([
    transforms.ToTensor(),
    transforms.Normalize((MNIST_MEAN,), (MNIST_STD,)),
])


def normalize(pixels):
    """Grey levels in [0, 1] as the network reads them: shifted by MNIST's mean, scaled by its deviation."""
    return (pixels - MNIST_MEAN) / MNIST_STD


def grey_levels(network_input):
    """The grey levels in [0, 1] a normalized input shows: normalize undone, and clamped."""
    return (network_input * MNIST_STD + MNIST_MEAN).clamp(0, 1)


class MNISTUnavailable(RuntimeError):
    """The MNIST files are missing or damaged and could not be fetched."""


def default_data_dir():
    return os.environ.get("MNIST_DATA_DIR", "../data")


def _check_raw_file(path, data_dir):
    size, magic = RAW_FILES[os.path.basename(path)]
    actual = os.path.getsize(path)
    with open(path, "rb") as f:
        head = int.from_bytes(f.read(4), "big")
    if actual != size or head != magic:
        raise MNISTUnavailable(
            f"MNIST file {path} is damaged ({actual} bytes, expected {size}; magic {head}, expected "
            f"{magic}): delete it so that it is downloaded again, or {_set_data_dir(data_dir)} a folder "
            "holding a good copy in MNIST/raw/")


def _first_missing_folder(path):
    """The outermost folder on the way to `path` that does not exist yet (None if it all exists)."""
    missing = None
    while not os.path.isdir(path):
        missing, path = path, os.path.dirname(path)
    return missing


def download_failure(error):
    """Why a download failed, in a few words. torchvision's message starts 'Error downloading NAME:' and
    lists each mirror it tried with its error, one per line; the last error names the cause, or where no mirror
    said why, the first line names the file."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    causes = [line for line in lines if not line.startswith("Tried ")]
    return (causes or [type(error).__name__])[-1].strip("<>")


def _download(data_dir):
    """Fetch all four files into a temporary folder first, so a failed download leaves nothing behind,
    not even the folders made for it."""
    raw = os.path.join(data_dir, "MNIST", "raw")
    made = _first_missing_folder(data_dir)
    try:
        os.makedirs(data_dir, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".mnist-download-", dir=data_dir)
    except OSError as e:
        raise MNISTUnavailable(
            f"MNIST is not in {raw} and {data_dir} is not writable for a download ({e.strerror}): "
            f"{_set_data_dir(data_dir)} a folder holding MNIST/raw/") from None
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # torchvision prints one line per failed mirror
            datasets.MNIST(staging, train=True, download=True)
        os.makedirs(raw, exist_ok=True)
        for name in RAW_FILES:
            os.replace(os.path.join(staging, "MNIST", "raw", name), os.path.join(raw, name))
    except (RuntimeError, OSError) as e:
        if made:
            shutil.rmtree(made, ignore_errors=True)
        names = ", ".join(RAW_FILES)
        raise MNISTUnavailable(
            f"MNIST is not in {raw} and could not be downloaded ({download_failure(e)}): put the four files "
            f"{names} there, or {_set_data_dir(data_dir)} the absolute path of a folder that holds them in "
            "MNIST/raw/") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_not_raw_itself(data_dir):
    """A common slip: the data folder named as MNIST/raw (or MNIST) itself, where the four files lie."""
    for inner, parent in [(data_dir, os.path.dirname(os.path.dirname(data_dir))),
                          (os.path.join(data_dir, "raw"), os.path.dirname(data_dir))]:
        if all(os.path.exists(os.path.join(inner, name)) for name in RAW_FILES):
            setting = "MNIST_DATA_DIR" if _named_by_variable(data_dir) else "the data folder"
            raise MNISTUnavailable(
                f"{setting} is {data_dir}, which holds MNIST's four files itself; it names the folder that holds "
                f"MNIST/raw/: set it to {parent}")


def _named_by_variable(data_dir):
    named = os.environ.get("MNIST_DATA_DIR")
    return bool(named) and os.path.abspath(named) == data_dir


def _set_data_dir(data_dir):
    """How to name another data folder: change the variable when it named this one, else set it."""
    return "change MNIST_DATA_DIR to" if _named_by_variable(data_dir) else "set MNIST_DATA_DIR to"


def load_mnist(data_dir=None, train=True, transform=None, subset=None):
    """torchvision's MNIST, read from data_dir/MNIST/raw; downloads only the files that are missing.

    subset: keep the first `subset` samples (None keeps all), for quick runs."""
    data_dir = os.path.abspath(data_dir or default_data_dir())  # messages name the folder wherever we run
    raw = os.path.join(data_dir, "MNIST", "raw")
    # torchvision reads either split only when all four files are there; the split read must also be whole
    if not all(os.path.exists(os.path.join(raw, name)) for name in RAW_FILES):
        _check_not_raw_itself(data_dir)
        _download(data_dir)
    for name in RAW_FILES:
        if name.startswith("train" if train else "t10k"):
            _check_raw_file(os.path.join(raw, name), data_dir)
    dataset = datasets.MNIST(data_dir, train=train, download=False, transform=transform)
    if subset is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(subset, len(dataset))))
    return dataset
