"""Fixtures: the real MNIST, read from MNIST_DATA_DIR (tests never download it), and digit images as users hand
them in, good and bad, for predict.py and the app. Plain helpers live in helpers.py and its siblings.

Without MNIST the tests that read it skip (a test that reads it through a command or a notebook is marked
`mnist`); under CI (the variable CI set) a missing MNIST stops the run instead, so that CI runs every test."""
import os

import matplotlib
import numpy as np
import pytest
from PIL import Image

from helpers import DATA_DIR
from inputs import png_header_only, user_image

matplotlib.use("Agg")  # this process only: notebooks run by the tests keep Jupyter's inline backend

from s5.data import RAW_FILES, load_mnist  # noqa: E402


MISSING = [name for name in RAW_FILES if not os.path.exists(os.path.join(DATA_DIR, "MNIST", "raw", name))]
WHY = (f"the real MNIST is not in {DATA_DIR}/MNIST/raw/ (it lacks {', '.join(MISSING)}): set MNIST_DATA_DIR to the "
       "absolute path of a folder that holds the four files in MNIST/raw/ (python quicklook.py downloads them "
       "there when online), e.g. MNIST_DATA_DIR=/home/me/data python -m pytest -q tests")


# the fixtures that read MNIST, here and in the test files (a test's fixturenames hold every fixture it reaches)
READS_MNIST = {"mnist_train", "mnist_test", "mixed_images", "test_digits", "test_images", "small_loaders"}


def pytest_configure(config):
    if os.environ.get("MUTANT_UNDER_TEST") == "stats":
        # mutmut's first pass, which counts the functions each test reaches: a command or a notebook that a test
        # starts in another folder would look for mutmut's settings there and fail, so it runs uncounted (mutmut
        # follows no test into another process anyway); this process keeps counting through mutmut's own copy
        del os.environ["MUTANT_UNDER_TEST"]
    if MISSING and os.environ.get("CI"):
        pytest.exit(f"CI runs every test, and {WHY}", returncode=2)
    os.environ["MNIST_DATA_DIR"] = DATA_DIR  # subprocesses and notebooks read the same copy


def pytest_collection_modifyitems(config, items):
    """Without MNIST, the tests that read it skip, saying why once each; the others run."""
    if not MISSING:
        return
    skip = pytest.mark.skip(reason=f"needs the real MNIST in {DATA_DIR}/MNIST/raw/: set MNIST_DATA_DIR to the folder "
                                   "that holds MNIST/raw/")
    for item in items:
        if item.get_closest_marker("mnist") or READS_MNIST & set(item.fixturenames):
            item.add_marker(skip)


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
