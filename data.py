"""MNIST for both pipelines: the original's PIL transforms, an offline-safe loader, and
DeviceLoader, which keeps the whole set on the training device and augments batches there."""
import contextlib
import io
import math
import os
import shutil
import tempfile

import torch
import torch.nn.functional as F
from torchvision import datasets, transforms

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
# name -> (size in bytes, idx magic number); the four files torchvision reads from MNIST/raw
RAW_FILES = {
    "train-images-idx3-ubyte": (16 + 60000 * 28 * 28, 2051),
    "train-labels-idx1-ubyte": (8 + 60000, 2049),
    "t10k-images-idx3-ubyte": (16 + 10000 * 28 * 28, 2051),
    "t10k-labels-idx1-ubyte": (8 + 10000, 2049),
}

# The original notebook's transforms, unchanged.
train_transforms = transforms.Compose([
    transforms.RandomApply([transforms.CenterCrop(22)], p=0.1),  # sometimes zoom in on the centre
    transforms.Resize((28, 28)),
    transforms.RandomRotation((-15.0, 15.0), fill=0),
    transforms.ToTensor(),
    transforms.Normalize((MNIST_MEAN,), (MNIST_STD,)),
])
test_transforms = transforms.Compose([
    transforms.ToTensor(),
    transforms.Normalize((MNIST_MEAN,), (MNIST_STD,)),
])


class MNISTUnavailable(RuntimeError):
    """The MNIST files are missing or damaged and could not be fetched."""


def default_data_dir():
    return os.environ.get("MNIST_DATA_DIR", "../data")


def _split_files(train):
    prefix = "train" if train else "t10k"
    return [name for name in RAW_FILES if name.startswith(prefix)]


def _check_raw_file(path):
    size, magic = RAW_FILES[os.path.basename(path)]
    actual = os.path.getsize(path)
    with open(path, "rb") as f:
        head = int.from_bytes(f.read(4), "big")
    if actual != size or head != magic:
        raise MNISTUnavailable(
            f"MNIST file {path} is damaged ({actual} bytes, expected {size}; magic {head}, expected "
            f"{magic}): delete it so that it is downloaded again, or set MNIST_DATA_DIR to a folder "
            "holding a good copy in MNIST/raw/")


def _download(data_dir):
    """Fetch all four files into a temporary folder first, so a failed download leaves nothing behind."""
    raw = os.path.join(data_dir, "MNIST", "raw")
    try:
        os.makedirs(data_dir, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".mnist-download-", dir=data_dir)
    except OSError as e:
        raise MNISTUnavailable(
            f"MNIST is not in {raw} and {data_dir} is not writable for a download ({e.strerror}): "
            "set MNIST_DATA_DIR to a folder holding MNIST/raw/") from None
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # torchvision prints one line per failed mirror
            datasets.MNIST(staging, train=True, download=True)
        os.makedirs(raw, exist_ok=True)
        for name in RAW_FILES:
            os.replace(os.path.join(staging, "MNIST", "raw", name), os.path.join(raw, name))
    except (RuntimeError, OSError) as e:
        names = ", ".join(RAW_FILES)
        raise MNISTUnavailable(
            f"MNIST is not in {raw} and could not be downloaded ({str(e).splitlines()[0]}). "
            f"Put the four files {names} into that folder, or set MNIST_DATA_DIR to a folder "
            "holding them in MNIST/raw/.") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_mnist(data_dir=None, train=True, transform=None, subset=None):
    """torchvision's MNIST, read from data_dir/MNIST/raw; downloads only the files that are missing.

    subset: keep the first `subset` samples (None keeps all), for quick runs."""
    data_dir = data_dir or default_data_dir()
    raw = os.path.join(data_dir, "MNIST", "raw")
    paths = [os.path.join(raw, name) for name in _split_files(train)]
    if not all(os.path.exists(p) for p in paths):
        _download(data_dir)
    for path in paths:
        _check_raw_file(path)
    dataset = datasets.MNIST(data_dir, train=train, download=False, transform=transform)
    if subset is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(subset, len(dataset))))
    return dataset


def draw_augmentation(n):
    """Per image: a rotation angle uniform in [-15, 15] degrees and a crop decision with probability 0.1.

    Drawn from torch's global CPU generator, so torch.manual_seed fixes them on every device."""
    crop = torch.rand(n) < 0.1
    angles = torch.empty(n).uniform_(-15.0, 15.0)
    return angles, crop


def augment(images, angles=None, crop=None):
    """The seed's train augmentation, batched: images are (N, 1, 28, 28) floats in [0, 1].

    crop: bool per image, centre crop to 22x22 resized back to 28x28, bilinear. angles: degrees per
    image, counter-clockwise rotation, nearest neighbour, zero fill; the same maths as torchvision's
    rotate on tensors. Both default to a fresh draw_augmentation."""
    if angles is None or crop is None:
        angles, crop = draw_augmentation(images.shape[0])
    cropped = torch.nonzero(torch.as_tensor(crop).cpu()).flatten().tolist()
    if cropped:
        images = images.clone()
        idx = torch.tensor(cropped, device=images.device)
        # CenterCrop(22) of 28 starts at round(3.0) = 3; upsampling, so antialiasing changes nothing
        images[idx] = F.interpolate(images[idx, :, 3:25, 3:25], size=(28, 28), mode="bilinear",
                                    align_corners=False)
    rad = torch.deg2rad(torch.as_tensor(angles, dtype=torch.float32)).to(images.device)
    cos, sin, zero = torch.cos(rad), torch.sin(rad), torch.zeros_like(rad)
    # maps output to input coordinates (y pointing down), as torchvision's inverse affine matrix does
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _images_and_targets(dataset):
    if isinstance(dataset, torch.utils.data.Subset):
        indices = torch.as_tensor(list(dataset.indices))
        return dataset.dataset.data[indices], dataset.dataset.targets[indices]
    return dataset.data, dataset.targets


class DeviceLoader:
    """Yields normalized (data, target) batches like a DataLoader, from uint8 images held on `device`.

    train=True shuffles every epoch and applies `augment`; otherwise the order is fixed and the
    images are only normalized. channels_last hands the convolutions the layout they run fastest in."""

    def __init__(self, dataset, batch_size, device, train=False, channels_last=True):
        images, targets = _images_and_targets(dataset)
        self.images = images.to(device).unsqueeze(1)  # uint8: 47 MB for the train set
        self.targets = targets.to(device)
        self.batch_size = batch_size
        self.train = train
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __len__(self):
        return math.ceil(len(self.targets) / self.batch_size)

    def __iter__(self):
        n = len(self.targets)
        order = torch.randperm(n).to(self.images.device) if self.train else None
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size] if self.train else slice(start, start + self.batch_size)
            data = self.images[idx].float().div_(255)
            if self.train:
                data = augment(data)
            data = data.sub_(MNIST_MEAN).div_(MNIST_STD).contiguous(memory_format=self.memory_format)
            yield data, self.targets[idx]
