import pytest
import torch

from model import Net

def layer_shapes(model, x):
    """Output shape of every row of the seed README's layer table, in its order."""
    shapes = {}
    hooks = [getattr(model, name).register_forward_hook(
        lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:])))
        for name in ("conv1", "conv2", "conv3", "conv4", "fc1", "fc2")]
    # the pooled maps are what conv3 and fc1 receive
    hooks.append(model.conv3.register_forward_pre_hook(lambda m, i: shapes.__setitem__("pool1", tuple(i[0].shape[1:]))))
    hooks.append(model.fc1.register_forward_pre_hook(lambda m, i: shapes.__setitem__("flat", tuple(i[0].shape[1:]))))
    model(x)
    for hook in hooks:
        hook.remove()
    return shapes


@pytest.mark.quick
def test_every_layer_of_the_table_has_the_seed_shape():
    shapes = layer_shapes(Net(), torch.zeros(3, 1, 28, 28))
    assert shapes == {
        "conv1": (32, 26, 26),   # layer 1
        "conv2": (64, 24, 24),   # layer 2
        "pool1": (64, 12, 12),   # layer 3: max-pool
        "conv3": (128, 10, 10),  # layer 4
        "conv4": (256, 8, 8),    # layer 5
        "flat": (4096,),         # layer 6: max-pool to 4x4x256, flattened
        "fc1": (50,),            # layer 7
        "fc2": (10,),            # layer 8
    }


@pytest.mark.quick
def test_parameter_count_per_layer_and_total():
    model = Net()
    per_layer = {name: sum(p.numel() for p in module.parameters()) for name, module in model.named_children()}
    assert per_layer == {"conv1": 320, "conv2": 18496, "conv3": 73856, "conv4": 295168, "fc1": 204850, "fc2": 510}
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 593200


@pytest.mark.quick
def test_output_is_log_probabilities():
    out = Net()(torch.randn(5, 1, 28, 28))
    assert out.shape == (5, 10)
    assert (out <= 0).all()
    torch.testing.assert_close(out.exp().sum(dim=1), torch.ones(5))


@pytest.mark.quick
@pytest.mark.parametrize("shape", [(1, 28, 28), (4, 3, 28, 28), (4, 1, 32, 32), (4, 784), (2, 1, 1, 28, 28)])
def test_wrong_input_shape_raises_a_clear_error(shape):
    with pytest.raises(ValueError) as err:
        Net()(torch.zeros(shape))
    assert str(err.value) == (f"Net expects a batch of shape (N, 1, 28, 28), got {shape}; add the batch and channel "
                              "dimensions with x.view(-1, 1, 28, 28) or resize the images to 28x28")


@pytest.mark.quick
def test_channels_last_gives_the_same_output():
    torch.manual_seed(0)
    model, x = Net().eval(), torch.randn(8, 1, 28, 28)
    expected = model(x)
    fast = model.to(memory_format=torch.channels_last)
    torch.testing.assert_close(fast(x.contiguous(memory_format=torch.channels_last)), expected,
                               rtol=1e-4, atol=1e-5)
