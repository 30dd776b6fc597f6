"""Fixtures: the real MNIST, read from MNIST_DATA_DIR (tests never download it), and digit images as users hand
them in, good and bad, for predict.py and the app. Plain helpers live in helpers.py."""
import os

import matplotlib
import numpy as np
import pytest
from PIL import Image

from helpers import DATA_DIR, png_header_only, user_image

matplotlib.use("Agg")  # this process only: notebooks run by the tests keep Jupyter's inline backend

from data import RAW_FILES, load_mnist  # noqa: E402


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
