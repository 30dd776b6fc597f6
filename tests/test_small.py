"""small.py: its two networks are the ones docs/own-network.md describes, layer by layer."""
import os
import textwrap

import pytest
import torch.nn as nn

from small import SeparableNet, SmallNet
from s5.explain import receptive_field_table
from helpers import ROOT

pytestmark = pytest.mark.quick
NETWORKS = [SmallNet, SeparableNet]


def layers(network):
    """The network's features, one module a step, in the order a forward pass meets them."""
    return [m for m in network().features.modules() if not isinstance(m, nn.Sequential)]


@pytest.mark.parametrize("network", NETWORKS)
def test_the_docs_show_each_networks_layer_table_as_explain_prints_it(network):
    with open(os.path.join(ROOT, "docs", "own-network.md")) as f:
        docs = f.read()
    table = textwrap.indent(receptive_field_table(network()), "    ")
    assert table in docs, f"docs/own-network.md's table of {network.__name__} is not what explain.py prints:\n{table}"


@pytest.mark.parametrize("network", NETWORKS)
def test_every_convolution_is_followed_by_batch_norm_then_relu(network):
    steps = layers(network)
    for i, step in enumerate(steps):
        if isinstance(step, nn.Conv2d):
            after = [type(m).__name__ for m in steps[i + 1:i + 3]]
            assert after == ["BatchNorm2d", "ReLU"], f"{network.__name__}'s convolution {i} is followed by {after}"


@pytest.mark.parametrize("network", NETWORKS)
def test_dropout_of_3_percent_ends_each_block_after_the_pooling_and_none_before(network):
    steps = layers(network)
    pooling = next(i for i, step in enumerate(steps) if isinstance(step, nn.MaxPool2d))
    assert not [s for s in steps[:pooling] if isinstance(s, nn.Dropout)], "no dropout at full resolution"
    assert [s.p for s in steps[pooling:] if isinstance(s, nn.Dropout)] == [0.03] * 3, "0.03 after each of 3 blocks"
