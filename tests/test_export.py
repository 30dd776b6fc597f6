"""export.py: the ONNX file gives PyTorch's answers on all 10,000 MNIST test images, the page's copy stays in step
with s5_net.pt, and a bad checkpoint or output gets one sentence and leaves no file behind."""
import os
import re

import pytest
import torch

pytest.importorskip("onnxruntime", reason="the export's packages are not installed: pip install -r requirements/export.txt")
pytest.importorskip("onnxscript", reason="the export's packages are not installed: pip install -r requirements/export.txt")

import export  # noqa: E402
import predict  # noqa: E402
from s5 import networks  # noqa: E402
from helpers import ROOT, help_words  # noqa: E402
from zoo import OTHER_NETWORKS  # noqa: E402

PAGE_MODEL = os.path.join(ROOT, "web", "s5_net.onnx")


@pytest.fixture(scope="module")
def test_images():
    return export.mnist_test_pixels()


def test_the_page_s_model_gives_the_shipped_weights_answers_on_the_test_set(test_images):
    assert test_images.shape == (10000, 1, 28, 28)
    assert test_images.min() == 0
    assert test_images.max() == 1
    agree, count, largest = export.parity(PAGE_MODEL, predict.load_model(), test_images)
    assert (agree, count) == (10000, 10000)
    assert largest < 1e-4
    print(f"web/s5_net.onnx against s5_net.pt: {agree} of {count} answers the same, largest log-probability "
          f"difference {largest:.1e}")


@pytest.mark.parametrize("network", OTHER_NETWORKS)
def test_networks_of_other_kinds_export_with_their_answers_on_every_test_image(network, tmp_path, test_images):
    """Batch norm, dropout and global average pooling; residual adds; strided, dilated and concatenated maps;
    depthwise convolutions: each exported, then ONNX Runtime against PyTorch on all 10,000 MNIST test images."""
    torch.manual_seed(0)
    model = networks.build(network).eval()
    for module in model.modules():  # batch norm's running statistics, as after training, not its defaults
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    export.export_onnx(model, str(tmp_path / "net.onnx"))
    agree, count, largest = export.parity(str(tmp_path / "net.onnx"), model, test_images)
    assert (agree, count) == (10000, 10000), (agree, largest)
    assert largest < 1e-4, (agree, largest)
    print(f"{network}: {agree} of {count} answers the same, largest difference {largest:.1e}")


def test_an_export_of_other_weights_gives_their_answers(tmp_path, test_images, capsys, monkeypatch):
    torch.manual_seed(0)
    model = networks.build().eval()  # untrained: different weights from the page's, so a stale file would show
    weights = tmp_path / "weights.pt"
    torch.save(model.state_dict(), weights)
    monkeypatch.chdir(tmp_path)  # with no --output, my_s5_net.onnx in the working folder
    assert export.main(["--checkpoint", str(weights), "--check"]) == 0
    wrote, checked = capsys.readouterr().out.splitlines()
    output = tmp_path / "my_s5_net.onnx"
    assert wrote == f"wrote my_s5_net.onnx ({os.path.getsize(output):,} bytes) of model:Net from {weights}"
    assert re.fullmatch(r"onnxruntime and PyTorch give the same answer on 10000 of 10000 MNIST test images; "
                        r"largest difference of any score \d\.\de-\d\d", checked), checked
    agree, count, largest = export.parity(str(output), model, test_images[:2000])
    assert (agree, count) == (2000, 2000)
    assert largest < 1e-4
    batch = export.run_onnx(str(output), test_images[:3].numpy())  # any batch size
    assert batch.shape == (3, 10)


def test_the_parity_check_says_no_for_a_file_of_other_weights(tmp_path, test_images):
    torch.manual_seed(0)
    exported, other = networks.build().eval(), networks.build().eval()
    export.export_onnx(exported, str(tmp_path / "net.onnx"))
    agree, count, largest = export.parity(str(tmp_path / "net.onnx"), other, test_images[:500])
    assert count == 500
    assert agree < 500
    assert largest > 1e-2


@pytest.mark.quick
def test_the_help_names_each_option_and_its_default(capsys):
    words = help_words(export, capsys)
    assert ("--output OUTPUT the ONNX file to write (default: named after the network, my_s5_net.onnx for model:Net, "
            "my_nets.Net6.onnx for my_nets:Net6)") in words
    assert "--check compare with PyTorch on the MNIST test set" in words
    assert ("--network NETWORK the network, as module:Class (default: the one the weights' record names, else "
            "model:Net)") in words
    assert "--checkpoint CHECKPOINT its weights, a run's record or bare weights (default: the shipped s5_net.pt)" in words


@pytest.mark.quick
def test_a_checkpoint_of_another_network_gets_one_sentence_and_no_file(tmp_path, capsys):
    weights = tmp_path / "linear.pt"
    torch.save(torch.nn.Linear(4, 2).state_dict(), weights)
    assert export.main(["--checkpoint", str(weights), "--output", str(tmp_path / "net.onnx")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"export.py: {weights}")
    assert len(error.strip().splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == ["linear.pt"]


@pytest.mark.quick
def test_an_output_in_a_missing_folder_gets_one_sentence(tmp_path, capsys):
    missing = tmp_path / "no-such-folder" / "net.onnx"
    assert export.main(["--output", str(missing)]) == 2
    assert capsys.readouterr().err == (f"export.py: {missing} is a folder or lies in a folder that does not exist: "
                                       "name a file in an existing folder with --output\n")
    assert os.listdir(tmp_path) == []


@pytest.mark.quick
def test_a_failed_export_leaves_the_old_file_whole(tmp_path):
    output = tmp_path / "net.onnx"
    output.write_bytes(b"the previous export")
    with pytest.raises(Exception):
        export.export_onnx(torch.nn.Conv2d(3, 1, 3), str(output))  # a network that cannot take a digit
    assert output.read_bytes() == b"the previous export"
    assert os.listdir(tmp_path) == ["net.onnx"]


@pytest.mark.quick
def test_a_check_without_mnist_says_so_in_one_sentence_and_writes_no_file(tmp_path, capsys, monkeypatch):
    closed = "http://127.0.0.1:9"  # a proxy on a closed local port: the download fails at once, as offline
    for variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(variable, closed)
    monkeypatch.setenv("MNIST_DATA_DIR", str(tmp_path / "data"))
    output = tmp_path / "net.onnx"
    assert export.main(["--check", "--output", str(output)]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1, error
    assert error.startswith("export.py: --check needs the MNIST test images: MNIST is not in "), error
    assert not output.exists(), "no file that looks checked"


@pytest.mark.quick
def test_a_folder_named_as_the_output_gets_one_sentence(tmp_path, capsys):
    assert export.main(["--output", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"export.py: {tmp_path} is a folder or lies in a folder that does not exist: "
                                       "name a file in an existing folder with --output\n")
    assert os.listdir(tmp_path) == [], "nothing written"


def test_with_no_output_named_the_file_is_named_after_the_network(tmp_path, capsys, monkeypatch):
    from s5.checkpoint import save_record
    from s5.training import Recipe
    save_record(tmp_path / "run.pt", networks.build("zoo:AssignmentNet"), {"test_acc": [10.0]},
                network="zoo:AssignmentNet", recipe=Recipe(epochs=1), seed=1, fast=True, precision="fp32",
                cuda_graph=False, train_seconds=1.0)
    monkeypatch.chdir(tmp_path)
    assert export.main(["--checkpoint", "run.pt", "--network", "zoo:AssignmentNet"]) == 0, capsys.readouterr().err
    assert (tmp_path / "zoo.AssignmentNet.onnx").is_file(), sorted(os.listdir(tmp_path))


class DriftingNet(torch.nn.Module):
    """A network that answers otherwise when PyTorch runs it for inference than when it is exported (Python that
    branches on how it is called, which an export freezes): the check must find the two apart."""

    def __init__(self):
        super().__init__()
        self.scores = torch.nn.Linear(28 * 28, 10)

    def forward(self, x):
        return self.scores(x.flatten(1)) + 1000 * torch.eye(10)[int(torch.is_inference_mode_enabled())]


def test_a_check_that_finds_answers_apart_exits_1(tmp_path, capsys):
    torch.save(DriftingNet().state_dict(), tmp_path / "drift.pt")
    code = export.main(["--network", "test_export:DriftingNet", "--checkpoint", str(tmp_path / "drift.pt"),
                        "--output", str(tmp_path / "drift.onnx"), "--check"])
    printed = capsys.readouterr()
    out = printed.out
    assert code == 1, printed.err
    agree = re.search(r"give the same answer on (\d+) of 10000 MNIST test images", out)
    assert agree and int(agree.group(1)) < 10000, out
