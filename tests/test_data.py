import gzip
import hashlib
import http.server
import os
import re
import threading
import urllib.request

import pytest
import torch
from PIL import Image
from torchvision import datasets, transforms

from s5 import data
from s5.data import MNIST_MEAN, MNIST_STD, RAW_FILES, MNISTUnavailable, default_data_dir, download_failure, load_mnist
from helpers import DATA_DIR


@pytest.mark.quick
def test_reads_the_real_mnist(mnist_train, mnist_test):
    assert len(mnist_train) == 60000
    assert len(mnist_test) == 10000
    assert mnist_train.targets[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist_test.targets[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    pixels = mnist_train.data.float() / 255
    assert pixels.mean().item() == pytest.approx(MNIST_MEAN, abs=1e-4)
    assert pixels.std().item() == pytest.approx(MNIST_STD, abs=1e-4)


@pytest.mark.mnist
@pytest.mark.quick
def test_subset_keeps_the_first_samples():
    subset = load_mnist(DATA_DIR, train=False, subset=100)
    assert len(subset) == 100
    assert subset[0][1] == 7


def offline(monkeypatch):
    """A proxy on a closed local port: any download attempt fails at once, as with no network."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "")


def test_offline_without_data_says_what_to_do_and_leaves_nothing(tmp_path, monkeypatch):
    offline(monkeypatch)
    monkeypatch.chdir(tmp_path)  # a relative folder two levels deep that does not exist yet, as '../data' in a clone
    with pytest.raises(MNISTUnavailable) as error:
        load_mnist(os.path.join("nested", "data"), train=True)
    message = str(error.value)
    assert len(message.splitlines()) == 1
    assert os.path.join(str(tmp_path), "nested", "data", "MNIST", "raw") in message  # the absolute path
    assert "MNIST_DATA_DIR to the absolute path" in message
    assert all(name in message for name in RAW_FILES)
    reason = re.search(r"could not be downloaded \((.*)\): put the four files", message).group(1)
    assert reason.strip()
    assert "Error downloading" not in reason  # the cause itself, never an empty reason
    assert list(tmp_path.iterdir()) == []  # no half-written files, not even the folders made for the download


@pytest.mark.quick
def test_a_data_folder_that_cannot_be_made_is_named_with_the_reason(tmp_path, monkeypatch):
    offline(monkeypatch)
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    data_dir = tmp_path / "notes.txt" / "data"
    with pytest.raises(MNISTUnavailable) as error:
        load_mnist(str(data_dir))
    assert str(error.value) == (f"MNIST is not in {data_dir / 'MNIST' / 'raw'} and {data_dir} is not writable for a "
                                "download (Not a directory): set MNIST_DATA_DIR to a folder holding MNIST/raw/")
    monkeypatch.setenv("MNIST_DATA_DIR", str(data_dir))
    with pytest.raises(MNISTUnavailable) as error:
        load_mnist()
    assert str(error.value).endswith(": change MNIST_DATA_DIR to a folder holding MNIST/raw/"), \
        "the variable named this folder: the sentence says to change it"


@pytest.mark.quick
def test_a_failed_download_is_named_by_its_last_cause():
    mirrors = RuntimeError("Error downloading train-images-idx3-ubyte.gz:\n"
                           "Tried https://a.example/, got:\n<urlopen error [Errno 111] Connection refused>\n"
                           "Tried https://b.example/, got:\n<urlopen error [Errno -2] Name or service not known>\n")
    assert download_failure(mirrors) == "urlopen error [Errno -2] Name or service not known"
    last_empty = RuntimeError("Error downloading t10k-labels-idx1-ubyte.gz:\nTried https://a.example/, got:\n"
                              "<urlopen error timed out>\nTried https://b.example/, got:\n")
    assert download_failure(last_empty) == "urlopen error timed out"  # the last mirror's error said nothing
    assert download_failure(RuntimeError("Error downloading train-images-idx3-ubyte.gz:")) == \
        "Error downloading train-images-idx3-ubyte.gz:"
    no_errors = RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://a.example/, got:\n")
    assert download_failure(no_errors) == "Error downloading train-images-idx3-ubyte.gz:", \
        "no mirror said why: the file that failed, not the mirror's line"
    assert download_failure(OSError()) == "OSError"


@pytest.mark.mnist
@pytest.mark.quick
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


@pytest.mark.quick
def test_a_folder_with_one_file_missing_gets_the_sentence_offline_for_either_split(tmp_path, monkeypatch):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in RAW_FILES:
        if name != "train-labels-idx1-ubyte":
            os.symlink(os.path.join(DATA_DIR, "MNIST", "raw", name), raw / name)
    for variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")  # a closed local port: the download fails at once
    monkeypatch.setenv("no_proxy", "")
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setattr(urllib.request, "_opener", None)  # urlopen builds and keeps an opener with these proxies
    for train in (True, False):  # torchvision reads the test split too only when all four files are there
        with pytest.raises(MNISTUnavailable, match=f"^MNIST is not in {re.escape(str(raw))} and could not be "
                                                   "downloaded"):
            load_mnist(str(tmp_path), train=train)


@pytest.mark.quick
def test_the_data_folder_defaults_to_the_original_s_and_the_variable_names_another(monkeypatch):
    monkeypatch.delenv("MNIST_DATA_DIR", raising=False)
    assert default_data_dir() == "../data"  # the original's datasets.MNIST('../data', ...)
    monkeypatch.setenv("MNIST_DATA_DIR", "/somewhere/else")
    assert default_data_dir() == "/somewhere/else"


@pytest.mark.mnist
@pytest.mark.quick
@pytest.mark.parametrize("inner", [("MNIST", "raw"), ("MNIST",)])
def test_a_data_folder_named_below_mnist_raw_gets_the_folder_to_name_instead(tmp_path, monkeypatch, inner):
    """The four files lie in the folder named (or in its raw/): the sentence names the folder to set instead."""
    raw = tmp_path.joinpath("MNIST", "raw")
    raw.mkdir(parents=True)
    for name in RAW_FILES:
        (raw / name).symlink_to(os.path.join(DATA_DIR, "MNIST", "raw", name))
    named = tmp_path.joinpath(*inner)
    monkeypatch.setenv("MNIST_DATA_DIR", str(named))
    with pytest.raises(MNISTUnavailable) as error:
        load_mnist()
    assert str(error.value) == (f"MNIST_DATA_DIR is {named}, which holds MNIST's four files itself; it names the "
                                f"folder that holds MNIST/raw/: set it to {tmp_path}")


class Mirror(http.server.SimpleHTTPRequestHandler):
    """A local MNIST mirror: serves the files of a folder, quietly."""

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def mirror_files(tmp_path_factory):
    """The four files gzipped, as a mirror holds them, with their MD5s (torchvision checks each download's)."""
    folder = tmp_path_factory.mktemp("mirror")
    sums = []
    for name in RAW_FILES:
        with open(os.path.join(DATA_DIR, "MNIST", "raw", name), "rb") as raw:
            packed = gzip.compress(raw.read(), compresslevel=1, mtime=0)
        (folder / f"{name}.gz").write_bytes(packed)
        sums.append((f"{name}.gz", hashlib.md5(packed).hexdigest()))
    return folder, sums


@pytest.fixture
def local_mirror(mirror_files, monkeypatch):
    """torchvision's MNIST pointed at a mirror on this machine: a real download over HTTP, with no network."""
    folder, sums = mirror_files
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1")
    monkeypatch.setattr(urllib.request, "_opener", None)

    def serve(*args, **kwargs):
        return Mirror(*args, directory=str(folder), **kwargs)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), serve)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(datasets.MNIST, "mirrors", [f"http://127.0.0.1:{server.server_port}/"])
    monkeypatch.setattr(datasets.MNIST, "resources", sums)
    yield folder
    server.shutdown()
    server.server_close()


@pytest.mark.mnist
@pytest.mark.quick
@pytest.mark.parametrize("missing", [list(RAW_FILES), ["t10k-labels-idx1-ubyte"]], ids=["all four", "one"])
def test_missing_files_are_downloaded_into_mnist_raw_and_nothing_else_stays(local_mirror, tmp_path, missing):
    raw = tmp_path / "data" / "MNIST" / "raw"
    if len(missing) < len(RAW_FILES):
        raw.mkdir(parents=True)
        for name in RAW_FILES:
            if name not in missing:
                (raw / name).symlink_to(os.path.join(DATA_DIR, "MNIST", "raw", name))
    test_set = load_mnist(str(tmp_path / "data"), train=False)
    assert test_set.targets[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9], "the downloaded test split reads whole"
    for name, (size, _) in RAW_FILES.items():
        assert os.path.getsize(raw / name) == size, f"{name} is not in MNIST/raw whole"
    assert os.listdir(tmp_path / "data") == ["MNIST"], "the download's staging folder stayed behind"
    assert os.listdir(tmp_path / "data" / "MNIST") == ["raw"]


@pytest.mark.mnist
@pytest.mark.quick
def test_a_download_is_staged_in_a_hidden_folder_inside_the_data_folder(local_mirror, tmp_path, monkeypatch):
    """Inside, so that moving the files into MNIST/raw never crosses file systems; hidden, so that an interrupted
    download does not look like data."""
    data_dir = tmp_path / "data"
    seen, serve = [], Mirror.do_GET

    def note_then_serve(handler):  # what the data folder holds while torchvision downloads
        seen.append(os.listdir(data_dir))
        return serve(handler)
    monkeypatch.setattr(Mirror, "do_GET", note_then_serve)
    load_mnist(str(data_dir), train=False)
    assert len(seen[0]) == 1 and seen[0][0].startswith(".mnist-download-"), seen[0]


@pytest.mark.quick
def test_a_mirror_without_the_files_is_named_by_its_error_in_one_sentence(local_mirror, tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.MNIST, "resources", [("nowhere.gz", None)])
    monkeypatch.setenv("MNIST_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(MNISTUnavailable) as error:
        load_mnist()
    raw = tmp_path / "data" / "MNIST" / "raw"
    assert str(error.value) == (
        f"MNIST is not in {raw} and could not be downloaded (HTTP Error 404: File not found): put the four files "
        "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte there, "
        "or change MNIST_DATA_DIR to the absolute path of a folder that holds them in MNIST/raw/")
    assert not (tmp_path / "data").exists(), "the folders made for the download stayed behind"


@pytest.mark.mnist
@pytest.mark.quick
def test_a_data_folder_given_as_an_argument_below_mnist_raw_is_called_the_data_folder(tmp_path, monkeypatch):
    raw = tmp_path.joinpath("MNIST", "raw")
    raw.mkdir(parents=True)
    for name in RAW_FILES:
        (raw / name).symlink_to(os.path.join(DATA_DIR, "MNIST", "raw", name))
    monkeypatch.delenv("MNIST_DATA_DIR", raising=False)
    with pytest.raises(MNISTUnavailable) as error:
        load_mnist(str(raw))
    assert str(error.value) == (f"the data folder is {raw}, which holds MNIST's four files itself; it names the "
                                f"folder that holds MNIST/raw/: set it to {tmp_path}")


def augmented(image, times, rotation):
    torch.manual_seed(0)
    augmentation = data.train_augmentation(rotation)
    return [augmentation(image) for _ in range(times)]


@pytest.mark.quick
def test_the_augmentation_zooms_into_the_centre_22_pixels_of_one_digit_in_ten(mnist_train):
    digit = Image.fromarray(mnist_train.data[0].numpy(), mode="L")
    plain = data.test_transforms(digit)
    zoomed = data.test_transforms(transforms.Resize((28, 28))(transforms.CenterCrop(22)(digit)))
    outputs = augmented(digit, 1000, rotation=0)
    assert all(torch.equal(x, plain) or torch.equal(x, zoomed) for x in outputs), "neither the digit nor its centre"
    share = sum(torch.equal(x, zoomed) for x in outputs) / len(outputs)
    assert 0.07 < share < 0.13, f"the centre is zoomed into on {share:.1%} of the draws, not about 10%"


@pytest.mark.quick
def test_the_augmentation_fills_the_corners_a_rotation_uncovers_with_black():
    white = Image.new("L", (28, 28), 255)
    black = (0 - MNIST_MEAN) / MNIST_STD
    corners = torch.stack([x[0, 0, 0] for x in augmented(white, 50, rotation=45)])
    assert torch.isclose(corners, torch.tensor(black)).float().mean() > 0.5, "the corners are not filled with black"
