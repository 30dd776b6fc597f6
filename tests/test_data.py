import os
import subprocess
import sys

import pytest
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from conftest import DATA_DIR, ROOT
from data import (MNIST_MEAN, MNIST_STD, RAW_FILES, DeviceLoader, MNISTUnavailable, augment,
                  draw_augmentation, load_mnist)


def test_reads_the_real_mnist(mnist_train, mnist_test):
    assert len(mnist_train) == 60000 and len(mnist_test) == 10000
    assert mnist_train.targets[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist_test.targets[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    pixels = mnist_train.data.float() / 255
    assert pixels.mean().item() == pytest.approx(MNIST_MEAN, abs=1e-4)
    assert pixels.std().item() == pytest.approx(MNIST_STD, abs=1e-4)


def test_subset_keeps_the_first_samples():
    subset = load_mnist(DATA_DIR, train=False, subset=100)
    assert len(subset) == 100 and subset[0][1] == 7


OFFLINE = """
import sys
from data import MNISTUnavailable, load_mnist
try:
    load_mnist(sys.argv[1], train=True)
except MNISTUnavailable as e:
    print(e)
    sys.exit(3)
"""


def test_offline_without_data_says_what_to_do_and_leaves_nothing(tmp_path):
    target = tmp_path / "data"
    # A proxy on a closed local port: any download attempt fails at once, as with no network.
    env = {**os.environ, "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""}
    run = subprocess.run([sys.executable, "-c", OFFLINE, str(target)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 3, run.stderr
    message = run.stdout.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in run.stderr
    assert os.path.join(str(target), "MNIST", "raw") in message and "MNIST_DATA_DIR" in message
    assert all(name in message for name in RAW_FILES)
    assert [str(p) for p in target.rglob("*")] == []  # no half-written files, not even an empty folder


def test_truncated_raw_file_is_named(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in RAW_FILES:
        os.symlink(os.path.join(DATA_DIR, "MNIST", "raw", name), raw / name)
    bad = raw / "t10k-images-idx3-ubyte"
    bad.unlink()
    with open(os.path.join(DATA_DIR, "MNIST", "raw", "t10k-images-idx3-ubyte"), "rb") as f:
        bad.write_bytes(f.read(5000))
    with pytest.raises(MNISTUnavailable, match="t10k-images-idx3-ubyte is damaged"):
        load_mnist(str(tmp_path), train=False)
    assert len(load_mnist(str(tmp_path), train=True)) == 60000  # the train files are fine


@pytest.mark.parametrize("angle", [-15.0, -11.3, -4.0, 0.0, 2.5, 9.7, 15.0])
@pytest.mark.parametrize("crop", [False, True])
def test_batched_augmentation_matches_torchvision(mnist_test, angle, crop):
    digits = mnist_test.data[:64].unsqueeze(1)  # uint8, as torchvision's tensor transforms take them
    ours = augment(digits.float() / 255, angles=torch.full((64,), angle), crop=torch.full((64,), crop)) * 255
    expected = []
    for digit in digits:
        if crop:
            digit = TF.resize(TF.center_crop(digit, [22, 22]), [28, 28], InterpolationMode.BILINEAR, antialias=True)
        expected.append(TF.rotate(digit, angle, InterpolationMode.NEAREST, fill=0))
    difference = (ours - torch.stack(expected).float()).abs()
    assert difference.max().item() <= 1.0  # within one grey level at every pixel
    if not crop and angle == 0.0:
        assert difference.max().item() == 0


def test_augmentation_draws_cover_the_recipe():
    torch.manual_seed(0)
    angles, crop = draw_augmentation(200_000)
    assert angles.min() >= -15.0 and angles.max() <= 15.0
    counts = torch.histc(angles, bins=30, min=-15.0, max=15.0)
    assert counts.min() > 0.9 * counts.mean()  # every degree of the range is used, evenly
    share = crop.float().mean().item()
    assert abs(share - 0.1) < 4 * (0.1 * 0.9 / 200_000) ** 0.5  # four standard errors


def test_augment_without_arguments_uses_one_fresh_draw(mnist_test):
    images = mnist_test.data[:32].unsqueeze(1).float() / 255
    torch.manual_seed(5)
    drawn = augment(images)
    torch.manual_seed(5)
    assert torch.equal(drawn, augment(images, *draw_augmentation(32)))
    assert not torch.equal(drawn, images)


def test_device_loader_batches(mnist_train):
    subset = torch.utils.data.Subset(mnist_train, range(1000))
    loader = DeviceLoader(subset, 256, "cpu", train=True)
    torch.manual_seed(0)
    batches = list(loader)
    assert len(loader) == len(batches) == 4
    assert [len(t) for _, t in batches] == [256, 256, 256, 232]
    data = batches[0][0]
    assert data.shape == (256, 1, 28, 28) and data.dtype == torch.float32
    assert data.is_contiguous(memory_format=torch.channels_last)
    assert data.min().item() == pytest.approx(-MNIST_MEAN / MNIST_STD)  # normalized, zero fill stays black
    targets = torch.cat([t for _, t in batches])
    assert sorted(targets.tolist()) == sorted(mnist_train.targets[:1000].tolist())  # each sample once
    assert not torch.equal(targets, mnist_train.targets[:1000])  # shuffled
    torch.manual_seed(0)
    again = list(loader)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, again))


def test_device_loader_for_testing_only_normalizes(mnist_test):
    loader = DeviceLoader(mnist_test, 512, "cpu", channels_last=False)
    data, target = next(iter(loader))
    expected = (mnist_test.data[:512].float().unsqueeze(1) / 255 - MNIST_MEAN) / MNIST_STD
    torch.testing.assert_close(data, expected)
    assert torch.equal(target, mnist_test.targets[:512])
