"""utils.py: the original's names, as its notebook imports and calls them."""
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from model import Net
import utils
from utils import GetCorrectPredCount, get_summary
from helpers import ROOT

# The original notebook's torchsummary table, row for row, as its published outputs show it.
SEED_TABLE = """\
----------------------------------------------------------------
        Layer (type)               Output Shape         Param #
================================================================
            Conv2d-1           [-1, 32, 26, 26]             320
            Conv2d-2           [-1, 64, 24, 24]          18,496
            Conv2d-3          [-1, 128, 10, 10]          73,856
            Conv2d-4            [-1, 256, 8, 8]         295,168
            Linear-5                   [-1, 50]         204,850
            Linear-6                   [-1, 10]             510
================================================================
Total params: 593,200
Trainable params: 593,200
Non-trainable params: 0
----------------------------------------------------------------
Input size (MB): 0.00
Forward/backward pass size (MB): 0.67
Params size (MB): 2.26
Estimated Total Size (MB): 2.94
----------------------------------------------------------------
"""

@pytest.mark.quick
def test_star_import_gives_the_original_names():
    namespace = {}
    exec("from utils import *\nfrom model import *", namespace)
    for name in ("device", "train", "test", "plot_loss", "get_summary", "GetCorrectPredCount", "plt", "Net", "nn"):
        assert name in namespace, name


@pytest.mark.parametrize("make", [lambda: Net, lambda: Net(), lambda: Net().to(memory_format=torch.channels_last)],
                         ids=["class", "instance", "channels_last instance"])
@pytest.mark.quick
def test_summary_prints_the_seed_table(make, capsys):
    assert get_summary(make()) == 593200
    assert capsys.readouterr().out == SEED_TABLE


@pytest.mark.quick
def test_the_summary_is_made_on_a_copy_and_leaves_the_model_as_it_was(capsys):
    model = Net().to(memory_format=torch.channels_last)
    get_summary(model)
    assert model.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    assert not model.conv2.weight.is_contiguous()


class Viewed(nn.Module):
    """A network that flattens with view(-1, n), as students' do; a channels-last copy of it cannot."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 26 * 26, 10)

    def forward(self, x):
        return self.fc(self.conv(x).view(-1, 4 * 26 * 26))


@pytest.mark.quick
def test_the_summary_reads_a_channels_last_network_that_flattens_with_view(capsys):
    model = Viewed().to(memory_format=torch.channels_last)  # as the fast path leaves it
    assert get_summary(model) == 27090
    assert "Linear-2                   [-1, 10]" in capsys.readouterr().out


@pytest.mark.quick
def test_the_summary_without_torchsummary_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchsummary", None)  # Python's own way to make an import fail
    with pytest.raises(ModuleNotFoundError, match="`pip install torchsummary`"):
        get_summary(Net)


@pytest.mark.quick
def test_get_correct_pred_count():
    pred = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert GetCorrectPredCount(pred, torch.tensor([1, 0, 0])) == 2


def test_device_on_this_machine():
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert utils.device.type == expected
    hidden = subprocess.run([sys.executable, "-c", "from utils import device; print(device)"], cwd=ROOT,
                            env={**__import__("os").environ, "CUDA_VISIBLE_DEVICES": ""},
                            capture_output=True, text=True, timeout=120)
    assert hidden.stdout.strip() == ("mps" if torch.backends.mps.is_available() else "cpu")
