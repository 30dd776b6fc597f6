"""Shared fixtures: the real MNIST, read from MNIST_DATA_DIR (tests never download it); and digit
images as users hand them in, good and bad, for predict.py and the app."""
import os
import shutil
import socket
import struct
import subprocess
import sys
import zlib

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
matplotlib.use("Agg")  # this process only: notebooks run by the tests keep Jupyter's inline backend

from data import RAW_FILES, default_data_dir, load_mnist  # noqa: E402

DATA_DIR = os.path.abspath(default_data_dir())
CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright's own browser download fails here


def pytest_configure(config):
    missing = [name for name in RAW_FILES if not os.path.exists(os.path.join(DATA_DIR, "MNIST", "raw", name))]
    if missing:
        pytest.exit(f"The tests read the real MNIST from {DATA_DIR}/MNIST/raw/, which lacks {', '.join(missing)}: "
                    "set MNIST_DATA_DIR to the absolute path of a folder that holds the four files in MNIST/raw/ "
                    "(python quicklook.py downloads them there when online), e.g. "
                    "MNIST_DATA_DIR=/home/me/data python -m pytest -q tests", returncode=2)
    os.environ["MNIST_DATA_DIR"] = DATA_DIR  # subprocesses and notebooks read the same copy


@pytest.fixture(scope="session")
def mnist_train():
    return load_mnist(DATA_DIR, train=True)


@pytest.fixture(scope="session")
def mnist_test():
    return load_mnist(DATA_DIR, train=False)


STROKES = {  # digits as pointer strokes, in fractions of a drawing pad, for the browser tests
    "1": [[(0.5, 0.15), (0.5, 0.85)]],
    "7": [[(0.25, 0.2), (0.75, 0.2)], [(0.75, 0.2), (0.4, 0.85)]],
    "0": [[(0.5 + 0.22 * np.sin(t), 0.5 - 0.33 * np.cos(t)) for t in np.linspace(0, 2 * np.pi, 13)]],
}


def user_image(digit, rng, size, mode):
    """An MNIST digit re-drawn as a user would hand it in: dark ink on light paper, larger, off-centre."""
    ink = Image.fromarray(255 - digit.numpy()).resize((size, size), Image.BILINEAR)
    canvas = Image.new("L", (int(size * 1.8), int(size * 1.5)), 255)
    canvas.paste(ink, (int(rng.integers(0, canvas.width - size)), int(rng.integers(0, canvas.height - size))))
    return canvas.convert("RGB") if mode != "L" else canvas


def net_with_zero_weights():
    """A Net whose every weight and bias is zero: it gives each digit a probability of 0.1."""
    from model import Net
    net = Net().eval()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.zero_()
    return net


def png_header_only(path, width, height):
    """A tiny PNG file that claims a huge size: decoding it would need width x height pixels."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


@pytest.fixture
def mixed_images(mnist_test, tmp_path):
    user_image(mnist_test.data[1], np.random.default_rng(2), 90, "RGB").save(tmp_path / "two.jpg")  # a 2
    (tmp_path / "notes.txt").write_text("not an image")
    buffer = tmp_path / "full.png"
    user_image(mnist_test.data[0], np.random.default_rng(3), 200, "L").save(buffer)
    (tmp_path / "truncated.png").write_bytes(buffer.read_bytes()[:300])
    Image.new("L", (64, 64), 250).save(tmp_path / "blank.png")
    png_header_only(tmp_path / "bomb.png", 40000, 40000)
    names = ["two.jpg", "missing.png", "notes.txt", "truncated.png", "blank.png", "bomb.png"]
    return [str(tmp_path / name) for name in names]


def tracked_files():
    """The repository's tracked files, or None outside a git checkout."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        return None
    return [name for name in listed.stdout.split("\0") if name and os.path.isfile(os.path.join(ROOT, name))]


def copy_of_repository(dest):
    """Copies the tracked files into `dest`, as a fresh clone holds them; returns their names (None: no git)."""
    names = tracked_files()
    for name in names or []:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.join(ROOT, name), dest / name)
    return names


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
