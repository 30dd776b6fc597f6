"""public.py: each published network is the one its repository shows, and carries the recipe its notebook states."""
import re

import pytest

import public
import torch
import torch.nn as nn

from s5.networks import parameter_count
from s5.training import Recipe

pytestmark = pytest.mark.quick
NETWORKS = [public.Madhur, public.Sunpau, public.Garima]


@pytest.mark.parametrize("network", NETWORKS)
def test_each_network_has_the_parameters_its_repositorys_summary_shows(network):
    shown = int(re.search(r"([\d,]+) parameters", network.__doc__).group(1).replace(",", ""))
    assert parameter_count(network()) == shown, f"{network.__name__} is not the network of {shown:,} parameters"


@pytest.mark.parametrize("network", NETWORKS)
def test_each_network_gives_ten_log_probabilities_a_digit(network):
    scores = network()(torch.zeros(2, 1, 28, 28))
    assert scores.shape == (2, 10), f"{network.__name__} gives {tuple(scores.shape)}, not ten scores a digit"
    assert torch.allclose(scores.exp().sum(1), torch.ones(2)), f"{network.__name__} does not end in log_softmax"


@pytest.mark.parametrize("network", NETWORKS)
def test_recipe_reads_every_field_each_network_carries(network):
    recipe = Recipe.of(network)
    for field, value in network.recipe.items():
        assert getattr(recipe, field) == value, f"{network.__name__}'s {field} is not the one its notebook states"


# the maps each network's global average reads, as its layer list gives them (the same parameters with other
# padding or pooling would average another map)
AVERAGED = {public.Madhur: (10, 5, 5), public.Sunpau: (10, 3, 3), public.Garima: (20, 6, 6)}
DROPOUT = {public.Madhur: [], public.Sunpau: [0.1] * 5, public.Garima: [0.05] * 5}


@pytest.mark.parametrize("network", NETWORKS)
def test_each_network_averages_the_map_its_layers_give(network):
    model = network().eval()
    averaged = []
    for layer in model.modules():
        if isinstance(layer, nn.AdaptiveAvgPool2d):
            assert layer.output_size == 1, f"{network.__name__} averages to more than one value a map"
            layer.register_forward_hook(lambda module, inputs, output: averaged.append(tuple(inputs[0].shape[1:])))
    model(torch.zeros(1, 1, 28, 28))
    assert averaged == [AVERAGED[network]], f"{network.__name__} averages {averaged}, not {AVERAGED[network]}"


@pytest.mark.parametrize("network", NETWORKS)
def test_each_network_drops_out_where_its_notebook_does(network):
    rates = [layer.p for layer in network().modules() if isinstance(layer, nn.Dropout)]
    assert rates == DROPOUT[network], f"{network.__name__} drops out {rates}, not {DROPOUT[network]}"
