import matplotlib
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import explain
import pictures
from checkpoint import load_checkpoint
from helpers import ROOT
import data
from model import Net

NET_FIELDS = [("conv1", "26x26", 3, 1), ("conv2", "24x24", 5, 1), ("pool1", "12x12", 6, 2), ("conv3", "10x10", 10, 2),
              ("conv4", "8x8", 14, 2), ("pool2", "4x4", 16, 4), ("fc1", 50, 28, None), ("fc2", 10, 28, None)]


@pytest.fixture(scope="module")
def shipped():
    model = Net()
    load_checkpoint(f"{ROOT}/s5_net.pt", model)
    return model.eval()


@pytest.fixture(scope="module")
def test_digits():
    digits = data.load_mnist(train=False, transform=data.test_transforms)
    return torch.stack([digits[i][0] for i in range(200)]), digits.targets[:200]


@pytest.mark.quick
def test_receptive_fields_of_net_come_from_its_layers():
    rows = explain.receptive_fields(Net())
    assert [(r["layer"], r["output"], r["rf"], r["jump"]) for r in rows] == NET_FIELDS
    table = explain.receptive_field_table(Net()).splitlines()
    assert table[5].split() == ["conv4", "8x8", "14x14", "2"] and table[7].split() == ["fc1", "50", "28x28", "-"]


def test_receptive_fields_of_another_network_with_stride_padding_dilation_and_pooling_modules():
    other = nn.Sequential(nn.Conv2d(1, 4, 5, padding=2), nn.MaxPool2d(2), nn.Conv2d(4, 8, 3, stride=2),
                          nn.ReLU(), nn.Conv2d(8, 8, 3, dilation=2, padding=2), nn.AvgPool2d(3, stride=1),
                          nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    rows = explain.receptive_fields(other)
    # by hand: rf += (k - 1) * dilation * jump; jump *= stride; a module's name names the layer
    assert [(r["layer"], r["output"], r["rf"], r["jump"]) for r in rows] == [
        ("0", "28x28", 5, 1), ("1", "14x14", 6, 2), ("2", "6x6", 10, 4), ("4", "6x6", 26, 4), ("5", "4x4", 34, 4),
        ("7", 10, 34 + 3 * 4, None)]
    assert [r["start"] for r in rows[:5]] == [0.0, 0.5, 2.5, 2.5, 6.5]


class Functional(nn.Module):
    """Convolutions and poolings called as functions, their geometry given by keyword and by position."""

    def __init__(self):
        super().__init__()
        self.w1, self.w2, self.w3 = (nn.Parameter(torch.randn(4, c, 3, 3)) for c in (1, 4, 4))

    def forward(self, x):
        x = F.conv2d(x, self.w1, None, stride=2, padding=1, dilation=2)
        x = F.max_pool2d(x, kernel_size=3, stride=1, padding=1, dilation=2)
        x = F.conv2d(x, self.w2, None, 1, 1, 1)
        x = F.max_pool2d(x, 2, None, 0, 2)  # no stride: the kernel's; its fifth argument is a dilation
        x = F.avg_pool2d(x, 2, 1, 0, False)  # here the fifth is ceil_mode
        return F.conv2d(x, self.w3)  # stride, padding and dilation: the defaults


@pytest.mark.quick
def test_receptive_fields_of_functional_calls_by_keyword_and_by_position():
    rows = explain.receptive_fields(Functional())
    # by hand: rf += (k - 1) * dilation * jump; start += ((k - 1) * dilation / 2 - padding) * jump; jump *= stride
    assert [(r["layer"], r["output"], r["rf"], r["jump"], r["start"]) for r in rows] == [
        ("conv2d", "13x13", 5, 2, 1.0), ("pool1", "11x11", 13, 2, 3.0), ("conv2d", "11x11", 17, 2, 3.0),
        ("pool2", "5x5", 21, 4, 5.0), ("pool3", "4x4", 25, 4, 7.0), ("conv2d", "2x2", 33, 4, 11.0)]
    with pytest.raises(ValueError) as error:
        explain.receptive_fields(nn.Sequential(nn.Conv2d(1, 2, 3, padding="same")))
    assert str(error.value) == "receptive_fields cannot place padding='same'; use numbers"


def test_a_units_box_is_exactly_the_pixels_that_can_change_it():
    """The box from the geometry against autograd: over many random inputs, the input pixels with a nonzero
    gradient for one unit fill exactly its box (a max-pool passes one pixel per window each time)."""
    torch.manual_seed(0)
    model = Net().double()
    fields = {row["layer"]: row for row in explain.receptive_fields(model)}
    for layer, unit in [("conv1", (0, 0)), ("conv2", (10, 3)), ("pool1", (11, 0)), ("conv3", (4, 7)),
                        ("conv4", (0, 0)), ("conv4", (7, 7)), ("conv4", (3, 5)), ("pool2", (1, 2))]:
        # 40 inputs in one batch: each output depends on its own image only, so the gradient of their sum
        # holds each unit's gradient in its image's slot
        images = torch.randn(40, 1, 28, 28, dtype=torch.float64, requires_grad=True)
        units = explain.activations(model, images)[layer][:, :, unit[0], unit[1]]
        strongest = units.gather(1, units.abs().argmax(dim=1, keepdim=True))
        grad, = torch.autograd.grad(strongest.sum(), images)
        reached = (grad[:, 0] != 0).any(dim=0)
        rows, cols = reached.nonzero().unbind(1)
        top, left, bottom, right = explain.receptive_field_box(fields[layer], *unit)
        assert (rows.min(), cols.min(), rows.max(), cols.max()) == (top, left, bottom, right), layer
        assert reached.sum() == (bottom - top + 1) * (right - left + 1), layer  # the whole box, not its outline
    assert explain.receptive_field_box(fields["conv4"], 3, 5) == (6, 10, 19, 23)  # 14x14 inside the image


@pytest.mark.quick
def test_activations_are_the_models_own_intermediate_values(shipped, test_digits):
    images = test_digits[0][:16]
    outputs = explain.activations(shipped, images)
    with torch.no_grad():
        conv1 = shipped.conv1(images)
        conv2 = shipped.conv2(F.relu(conv1))
        pool1 = F.max_pool2d(conv2, 2)
        conv3 = shipped.conv3(F.relu(pool1))
        conv4 = shipped.conv4(F.relu(conv3))
        pool2 = F.max_pool2d(conv4, 2)
    expected = {"conv1": conv1, "conv2": conv2, "pool1": pool1, "conv3": conv3, "conv4": conv4, "pool2": pool2}
    assert list(outputs) == list(expected)
    for name, value in expected.items():
        assert torch.equal(outputs[name], value), name
    assert not shipped._forward_hooks and not shipped.conv1._forward_hooks  # nothing left attached


@pytest.mark.quick
def test_attribution_answers_for_any_digit(shipped, test_digits):
    images, labels = test_digits[0][:4], test_digits[1][:4]
    maps = explain.attribution(shipped, images, labels)
    assert maps.shape == (4, 28, 28) and maps.dtype == torch.float32
    other = explain.attribution(shipped, images, (labels + 1) % 10)  # "why not this one?"
    assert not torch.allclose(maps, other)
    with pytest.raises(ValueError, match="Unknown attribution method 'lime': use one of integrated_gradients"):
        explain.attribution(shipped, images, labels, "lime")


def test_the_default_attribution_is_faithful_by_deletion(shipped, test_digits):
    images, labels = test_digits
    maps = explain.attribution(shipped, images, labels)
    left, random_left = explain.deletion_test(shipped, images, labels, maps)
    assert left <= 0.30 and left < random_left - 0.3, (left, random_left)
    gradcam_left, _ = explain.deletion_test(shipped, images, labels,
                                            explain.attribution(shipped, images, labels, "gradcam_conv4"))
    assert gradcam_left > random_left  # Grad-CAM on conv4 is worse than chance here


def test_deletion_test_deletes_what_it_says(shipped, test_digits):
    images, labels = test_digits[0][:50], test_digits[1][:50]
    ink = (images > explain.BACKGROUND + 1e-6).float().squeeze(1)
    left_ink, random_left = explain.deletion_test(shipped, images, labels, ink + torch.rand(ink.shape))
    left_nothing, _ = explain.deletion_test(shipped, images, labels, -ink, fraction=0.05)  # background only
    with torch.no_grad():
        before = shipped(images).exp().gather(1, labels[:, None]).mean().item()
    assert left_nothing == pytest.approx(before, abs=0.02)  # deleting black pixels changes nothing
    assert left_ink < before and random_left < before


@pytest.mark.quick
def test_integrated_gradients_start_from_the_black_background(shipped, test_digits):
    """Completeness: integrated gradients add up to the score at the input less the score at the baseline; with
    the black background as that baseline, and no other."""
    images, labels = test_digits[0][:8], test_digits[1][:8]
    maps = explain.attribution(shipped, images, labels)
    with torch.no_grad():
        at_input = shipped(images).gather(1, labels[:, None]).squeeze(1)
        black = shipped(torch.full_like(images, explain.BACKGROUND)).gather(1, labels[:, None]).squeeze(1)
        grey = shipped(torch.zeros_like(images)).gather(1, labels[:, None]).squeeze(1)  # the mean grey, normalized
    totals = maps.sum(dim=(1, 2))
    assert torch.allclose(totals, at_input - black, atol=0.05, rtol=0.02), (totals, at_input - black)
    assert not torch.allclose(totals, at_input - grey, atol=0.05, rtol=0.02)


@pytest.mark.quick
def test_the_receptive_field_table_prints_each_layer_as_receptive_fields_gives_it():
    lines = explain.receptive_field_table(Net()).splitlines()
    assert lines[0] == "layer     output  receptive field  jump"
    assert lines[1] == "conv1      26x26              3x3     1"
    assert lines[5] == "conv4        8x8            14x14     2"
    assert lines[7] == "fc1           50            28x28     -"
    assert [line.split()[0] for line in lines[1:]] == [layer for layer, *_ in NET_FIELDS]


@pytest.mark.quick
def test_the_feature_map_plot_shows_each_layers_grid_after_its_relu(shipped, test_digits):
    digit = test_digits[0][0]
    figure = explain.plot_feature_maps(shipped, digit)
    with torch.no_grad():
        maps = explain.activations(shipped, digit.unsqueeze(0))
    assert len(figure.axes) == 4
    for ax, (layer, output, rf, _), channels in zip(figure.axes, NET_FIELDS[:2] + NET_FIELDS[3:5], (32, 64, 128, 256)):
        assert ax.get_title() == (f"{layer}: {output} maps, the 8 most active of {channels}; each unit sees {rf}x{rf} "
                                  "input pixels")
        assert (ax.get_images()[0].get_array() == pictures.feature_map_grid(maps[layer][0])[0]).all()
    matplotlib.pyplot.close(figure)


@pytest.mark.quick
def test_the_attribution_plot_shows_each_mistake_with_its_own_map(shipped, test_digits):
    images, labels = test_digits
    gallery = {"images": list(images[:3]), "ground_truths": labels[:3].tolist(), "predicted_vals": [1, 2, 3]}
    figure = explain.plot_attributions(shipped, gallery, count=2)
    maps = explain.attribution(shipped, images[:2], [1, 2])
    shown = [ax for ax in figure.axes if ax.get_images()]
    assert [ax.get_title() for ax in shown] == [f"{labels[0].item()} -> 1", f"{labels[1].item()} -> 2"]
    for i, ax in enumerate(shown):
        assert (ax.get_images()[0].get_array() == pictures.attribution_picture(images[i:i + 1], maps[i])).all()
    assert figure._suptitle.get_text().startswith("What raised the wrong answer (red)")
    matplotlib.pyplot.close(figure)
    empty = explain.plot_attributions(shipped, {"images": [], "ground_truths": [], "predicted_vals": []})
    assert [ax.get_title() for ax in empty.axes] == ["no misclassified digits"]
    matplotlib.pyplot.close(empty)


@pytest.mark.quick
def test_the_faithfulness_table_has_a_row_per_method_from_its_own_deletion_test(shipped, test_digits):
    images, labels = test_digits[0][:8], test_digits[1][:8]
    rows = explain.faithfulness_table(shipped, images, labels, methods=("saliency", "integrated_gradients"))
    assert [row[0] for row in rows] == ["saliency", "integrated_gradients"]
    for method, left, random_left, seconds in rows:
        expected = explain.deletion_test(shipped, images, labels, explain.attribution(shipped, images, labels, method))
        assert (left, random_left) == pytest.approx(expected) and seconds > 0
