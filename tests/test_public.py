"""public.py: each published network is the one its repository shows, and carries the recipe its notebook states."""
import re

import pytest

import public
import torch

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
    assert torch.allclose(scores.exp().sum(1), torch.ones(2)), f"{network.__name__} does not end in log_softmax"


@pytest.mark.parametrize("network", NETWORKS)
def test_recipe_reads_every_field_each_network_carries(network):
    recipe = Recipe.of(network)
    for field, value in network.recipe.items():
        assert getattr(recipe, field) == value, f"{network.__name__}'s {field} is not the one its notebook states"
