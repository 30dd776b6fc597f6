"""Shared fixtures: the real MNIST, read from MNIST_DATA_DIR (CI: ../shared/data); tests never download."""
import os
import sys

import matplotlib
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
matplotlib.use("Agg")  # this process only: notebooks run by the tests keep Jupyter's inline backend

from data import RAW_FILES, default_data_dir, load_mnist  # noqa: E402

DATA_DIR = os.path.abspath(default_data_dir())
SEED_DOC = os.path.normpath(os.path.join(ROOT, "..", "shared", "seed", "era-s5-original.md"))


def pytest_configure(config):
    missing = [name for name in RAW_FILES if not os.path.exists(os.path.join(DATA_DIR, "MNIST", "raw", name))]
    if missing:
        pytest.exit(f"The tests read the real MNIST from {DATA_DIR}/MNIST/raw/, which lacks {', '.join(missing)}: "
                    "set MNIST_DATA_DIR to a folder holding the four files in MNIST/raw/ "
                    "(CI uses MNIST_DATA_DIR=../shared/data).", returncode=2)
    os.environ["MNIST_DATA_DIR"] = DATA_DIR  # subprocesses and notebooks read the same copy


@pytest.fixture(scope="session")
def mnist_train():
    return load_mnist(DATA_DIR, train=True)


@pytest.fixture(scope="session")
def mnist_test():
    return load_mnist(DATA_DIR, train=False)
