import os
import re
import subprocess
import sys

import matplotlib
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import explain as explain_command
from model import Net
from s5 import data, explain, networks, pictures
from s5.checkpoint import load_checkpoint
from helpers import ROOT
import zoo

# (layer, output shape, receptive field, jump) of each layer of Net, by hand from the original's table
NET_FIELDS = [("conv1", (32, 26, 26), 3, 1), ("conv2", (64, 24, 24), 5, 1), ("pool1", (64, 12, 12), 6, 2),
              ("conv3", (128, 10, 10), 10, 2), ("conv4", (256, 8, 8), 14, 2), ("pool2", (256, 4, 4), 16, 4),
              ("fc1", (50,), 28, None), ("fc2", (10,), 28, None)]


def square(rows):
    """(layer, shape, rf, jump) of receptive_fields' rows, whose fields are square."""
    for row in rows:
        assert row["rf"][0] == row["rf"][1]
        assert row["jump"] is None or row["jump"][0] == row["jump"][1]
    return [(r["layer"], r["shape"], r["rf"][0], r["jump"] and r["jump"][0]) for r in rows]


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
    assert square(rows) == NET_FIELDS
    assert [row["kind"] for row in rows] == ["conv", "conv", "pool", "conv", "conv", "pool", "linear", "linear"]
    assert [row["params"] for row in rows] == [320, 18496, 0, 73856, 295168, 0, 204850, 510]
    assert explain.last_convolution(rows)["layer"] == "conv4"


def test_the_last_convolution_is_the_one_before_global_pooling_not_a_1x1_classifier_after_it():
    rows = explain.receptive_fields(zoo.AssignmentNet())
    assert [row["layer"] for row in rows if row["kind"] == "conv"][-1] == "classify"
    last = explain.last_convolution(rows)
    assert (last["layer"], last["shape"], last["rf"]) == ("features.5.0", (12, 11, 11), (14, 14))


def test_receptive_fields_of_another_network_with_stride_padding_dilation_and_pooling_modules():
    other = nn.Sequential(nn.Conv2d(1, 4, 5, padding=2), nn.MaxPool2d(2), nn.Conv2d(4, 8, 3, stride=2),
                          nn.ReLU(), nn.Conv2d(8, 8, 3, dilation=2, padding=2), nn.AvgPool2d(3, stride=1),
                          nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    rows = explain.receptive_fields(other)
    # by hand: rf += (k - 1) * dilation * jump; jump *= stride; a module's name names the layer
    assert [(name, shape[1:], rf, jump) for name, shape, rf, jump in square(rows)] == [
        ("0", (28, 28), 5, 1), ("1", (14, 14), 6, 2), ("2", (6, 6), 10, 4), ("4", (6, 6), 26, 4), ("5", (4, 4), 34, 4),
        ("7", (), 34 + 3 * 4, None)]
    assert [r["start"][0] for r in rows[:5]] == [0.0, 0.5, 2.5, 2.5, 6.5]


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
    assert [(r["layer"], r["shape"][1:], r["rf"][0], r["jump"][0], r["start"][0]) for r in rows] == [
        ("conv1", (13, 13), 5, 2, 1.0), ("pool1", (11, 11), 13, 2, 3.0), ("conv2", (11, 11), 17, 2, 3.0),
        ("pool2", (5, 5), 21, 4, 5.0), ("pool3", (4, 4), 25, 4, 7.0), ("conv3", (2, 2), 33, 4, 11.0)]
    same = explain.receptive_fields(nn.Sequential(nn.Conv2d(1, 2, 3, padding="same"), nn.Conv2d(2, 2, 4, padding="same")))
    # 'same' pads (k - 1) // 2 before: 1 for a 3x3, 1 for a 4x4 (and 2 after it)
    assert [(r["rf"], r["start"], r["shape"]) for r in same] == [((3, 3), (0.0, 0.0), (2, 28, 28)),
                                                                 ((6, 6), (0.5, 0.5), (2, 28, 28))]


def with_positive_weights(model):
    """The network in float64 and eval mode, every weight and bias in [0.5, 1]: no path through it is cut by a
    zero (each ReLU passes, each batch norm scales up), so a pixel can change every unit its paths reach."""
    torch.manual_seed(0)
    model = model.double().eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.uniform_(0.5, 1.0)
    return model


def reached(model):
    """{layer: (28, 28, height, width) bool}: which input pixels change which unit of each layer (any of its
    channels), measured: 784 copies of one image, each with one pixel raised by 1e12, through one forward pass.
    A linear layer counts as one unit (1, 1) that sees what any of its outputs sees."""
    base = torch.rand(1, 1, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.5
    images = base.repeat(785, 1, 1, 1)
    images[1:].view(784, 784)[torch.arange(784), torch.arange(784)] += 1e12
    with torch.no_grad():
        rows = explain._walk(model, networks.trace(model, images), images)
    found = {}
    for row in rows:
        output = row["output"].reshape(785, row["output"].shape[1], -1) if row["output"].dim() == 4 else \
            row["output"].reshape(785, -1, 1)
        changed = (output[1:] != output[:1]).any(dim=1)  # (784, units)
        shape = row["output"].shape[-2:] if row["output"].dim() == 4 else (1, 1)
        found[row["layer"]] = changed.view(28, 28, *shape)
    return found


ARCHITECTURES = {"model:Net": Net, **zoo.OTHER_NETWORKS}


@pytest.mark.parametrize("network", ARCHITECTURES)
def test_every_units_receptive_field_is_the_box_of_pixels_that_can_change_it(network):
    """The table's field against a measurement, for every unit of every layer: the input pixels that change a unit
    fill exactly the box receptive_field_box gives it (clipped to the image: padding is not input)."""
    model = with_positive_weights(ARCHITECTURES[network]())
    fields = {row["layer"]: row for row in explain.receptive_fields(model)}
    measured = reached(model)
    assert list(measured) == list(fields)
    ys, xs = torch.meshgrid(torch.arange(28), torch.arange(28), indexing="ij")
    for layer, changes in measured.items():
        height, width = changes.shape[2:]
        for row in range(height):
            for col in range(width):
                pixels = changes[:, :, row, col]
                assert pixels.any(), (layer, row, col)
                box = (ys[pixels].min().item(), xs[pixels].min().item(), ys[pixels].max().item(), xs[pixels].max().item())
                assert box == explain.receptive_field_box(fields[layer], row, col), (network, layer, row, col)
                top, left, bottom, right = box
                assert pixels.sum().item() == (bottom - top + 1) * (right - left + 1), (layer, row, col)  # whole box
    print(f"{network}: {len(measured)} layers, {sum(c.shape[2] * c.shape[3] for c in measured.values())} units")


class Branches(nn.Module):
    """A wide and a tall branch, joined: each unit reads a cross, a 1x7 row and a 7x1 column."""

    def __init__(self):
        super().__init__()
        self.wide, self.tall = nn.Conv2d(1, 2, (1, 7), padding=(0, 3)), nn.Conv2d(1, 2, (7, 1), padding=(3, 0))

    def forward(self, x):
        return torch.cat([self.wide(x), self.tall(x)], dim=1).mean(dim=(2, 3))


def test_a_merge_of_branches_of_other_shapes_reads_the_union_of_their_boxes():
    """Where a unit's pixels do not fill its box, after a merge of branches that read differently shaped fields:
    the box is still their bounding box, and the pixels are exactly the union of the branches' boxes."""
    model = with_positive_weights(Branches())
    fields = {row["layer"]: row for row in explain.receptive_fields(model)}
    measured = reached(model)["cat1"]
    pictures_of = {}
    for name in ("wide", "tall"):
        pictures_of[name] = torch.zeros(28, 28, 28, 28, dtype=torch.bool)
        for row in range(28):
            for col in range(28):
                top, left, bottom, right = explain.receptive_field_box(fields[name], row, col)
                pictures_of[name][top:bottom + 1, left:right + 1, row, col] = True
    assert torch.equal(measured, pictures_of["wide"] | pictures_of["tall"])
    assert fields["wide"]["rf"] == (1, 7)
    assert fields["tall"]["rf"] == (7, 1)
    assert fields["cat1"]["rf"] == (7, 7)
    assert measured[:, :, 13, 13].sum() == 13  # a cross in its 7x7 box
    ys, xs = torch.meshgrid(torch.arange(28), torch.arange(28), indexing="ij")
    for row, col in ((0, 0), (0, 13), (27, 27)):
        pixels = measured[:, :, row, col]
        box = (ys[pixels].min().item(), xs[pixels].min().item(), ys[pixels].max().item(), xs[pixels].max().item())
        assert box == explain.receptive_field_box(fields["cat1"], row, col)


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
    assert not shipped._forward_hooks
    assert not shipped.conv1._forward_hooks  # nothing left attached


def test_activations_as_read_are_what_follows_each_convolution_alone(test_digits):
    """AssignmentNet's blocks are convolution, batch norm, ReLU, dropout: each block's output is its convolution
    as the next layer reads it."""
    model = zoo.with_shifted_batch_norm(zoo.AssignmentNet())
    images = test_digits[0][:4]
    with torch.no_grad():
        read = explain.activations(model, images, as_read=True)
        expected = model.features[0](images)
    assert torch.equal(read["features.0.0"], expected), "as_read: not the block's output after batch norm and ReLU"


def test_grad_cam_on_a_network_without_a_convolution_module_is_refused_in_one_sentence(test_digits):
    images, labels = test_digits[0][:2], test_digits[1][:2]
    for model in (nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), Functional()):  # no convolution; functional ones
        with pytest.raises(ValueError) as error:
            explain.attribution(model, images, labels, "gradcam")
        assert str(error.value) == (f"Grad-CAM needs a convolution module (nn.Conv2d), and {networks.name_of(model)} "
                                    "has none: use another attribution method"), str(error.value)


@pytest.mark.quick
def test_attribution_answers_for_any_digit(shipped, test_digits):
    images, labels = test_digits[0][:4], test_digits[1][:4]
    maps = explain.attribution(shipped, images, labels)
    assert maps.shape == (4, 28, 28)
    assert maps.dtype == torch.float32
    other = explain.attribution(shipped, images, (labels + 1) % 10)  # "why not this one?"
    assert not torch.allclose(maps, other)
    with pytest.raises(ValueError) as error:
        explain.attribution(shipped, images, labels, "lime")
    assert str(error.value) == ("Unknown attribution method 'lime': use one of integrated_gradients, occlusion, "
                                "deeplift, input_x_gradient, saliency, gradcam"), str(error.value)


def test_the_default_attribution_is_faithful_by_deletion(shipped, test_digits):
    images, labels = test_digits
    maps = explain.attribution(shipped, images, labels)
    left, random_left = explain.deletion_test(shipped, images, labels, maps)
    assert left <= 0.30, (left, random_left)
    assert left < random_left - 0.3, (left, random_left)
    gradcam_left, _ = explain.deletion_test(shipped, images, labels,
                                            explain.attribution(shipped, images, labels, "gradcam"))
    assert gradcam_left > random_left  # Grad-CAM on conv4, the last, is worse than chance here


def test_deletion_test_deletes_what_it_says(shipped, test_digits):
    images, labels = test_digits[0][:50], test_digits[1][:50]
    ink = (images > explain.BACKGROUND + 1e-6).float().squeeze(1)
    left_ink, random_left = explain.deletion_test(shipped, images, labels, ink + torch.rand(ink.shape))
    left_nothing, _ = explain.deletion_test(shipped, images, labels, -ink, fraction=0.05)  # background only
    with torch.no_grad():
        before = shipped(images).exp().gather(1, labels[:, None]).mean().item()
    assert left_nothing == pytest.approx(before, abs=0.02)  # deleting black pixels changes nothing
    assert left_ink < before
    assert random_left < before


def test_the_random_deletion_deletes_ink_however_faint(shipped, test_digits):
    """Digits at a fifth of their brightness: deleting random ink (the baseline) leaves far less of each answer
    than deleting as many pixels anywhere (the top of random maps), most of them background."""
    images, labels = test_digits[0][:50], test_digits[1][:50]
    faint = explain.BACKGROUND + (images - explain.BACKGROUND) * 0.2
    anywhere = torch.rand(50, 28, 28, generator=torch.Generator().manual_seed(0))
    left_anywhere, random_ink_left = explain.deletion_test(shipped, faint, labels, anywhere)
    assert random_ink_left < left_anywhere - 0.1, ("the random deletion passed over faint ink",
                                                   random_ink_left, left_anywhere)


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
    assert lines[0] == "layer  kind            output  receptive field   jump    params"
    assert lines[1] == "conv1  conv          32x26x26              3x3    1x1       320"
    assert lines[5] == "conv4  conv           256x8x8            14x14    2x2   295,168"
    assert lines[7] == "fc1    linear              50            28x28      -   204,850"
    assert lines[9] == "total parameters: 593,200"
    assert [line.split()[0] for line in lines[1:9]] == [layer for layer, *_ in NET_FIELDS]


@pytest.mark.quick
def test_the_feature_map_plot_shows_each_layers_grid_after_its_relu(shipped, test_digits):
    digit = test_digits[0][0]
    figure = explain.plot_feature_maps(shipped, digit)
    with torch.no_grad():
        maps = explain.activations(shipped, digit.unsqueeze(0))
    assert len(figure.axes) == 4
    for ax, (layer, shape, rf, _) in zip(figure.axes, NET_FIELDS[:2] + NET_FIELDS[3:5]):
        assert ax.get_title() == (f"{layer}: {shape[1]}x{shape[2]} maps, the 8 most active of {shape[0]}; each unit "
                                  f"sees {rf}x{rf} input pixels")
        assert (ax.get_images()[0].get_array() == pictures.feature_map_grid(maps[layer][0])[0]).all()
    matplotlib.pyplot.close(figure)


def test_the_feature_map_plot_shows_each_layer_as_the_next_layer_reads_it(test_digits):
    model = zoo.with_shifted_batch_norm(zoo.AssignmentNet())
    digit = test_digits[0][0]
    figure = explain.plot_feature_maps(model, digit, layers=["features.0.0"])
    with torch.no_grad():
        read = explain.activations(model, digit.unsqueeze(0), as_read=True)["features.0.0"]
    shown = figure.axes[0].get_images()[0].get_array()
    assert (shown == pictures.feature_map_grid(read[0])[0]).all(), "not the maps after the block's batch norm"
    matplotlib.pyplot.close(figure)


def test_the_plots_show_pictures_without_axes(shipped, test_digits):
    nothing = {"images": [], "ground_truths": [], "predicted_vals": []}
    for figure in (explain.plot_feature_maps(shipped, test_digits[0][0]), explain.plot_attributions(shipped, nothing)):
        assert not any(ax.axison for ax in figure.axes), "a picture drawn with ticks and a frame"
        matplotlib.pyplot.close(figure)


def test_the_attribution_plot_shows_the_first_20_mistakes_in_rows_of_5_unless_told(shipped, test_digits):
    images, labels = test_digits
    gallery = {"images": list(images[:21]), "ground_truths": labels[:21].tolist(), "predicted_vals": [0] * 21}
    figure = explain.plot_attributions(shipped, gallery)
    shown = [ax for ax in figure.axes if ax.get_images()]
    assert len(shown) == 20, f"{len(shown)} pictures, not the first 20 of 21 mistakes"
    assert figure.axes[0].get_gridspec().get_geometry() == (4, 5), "not 5 pictures a row"
    matplotlib.pyplot.close(figure)
    figure = explain.plot_attributions(shipped, gallery, count=8, cols=4)
    assert figure.axes[0].get_gridspec().get_geometry() == (2, 4), "cols=4: not 4 pictures a row"
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
        assert (left, random_left) == pytest.approx(expected)
        assert seconds > 0


@pytest.mark.quick
@pytest.mark.parametrize("rf, text", [((14, 14), "14x14"), ((28, 28), "28x28"), ((34, 34), "all 28x28"),
                                      ((34, 20), "28x20"), (None, "?")])
def test_a_field_is_written_clipped_to_the_image(rf, text):
    assert explain.field_text(rf) == text


@pytest.mark.quick
def test_a_field_past_the_image_reads_as_all_of_it_and_its_textbook_figure_is_said_below_the_table():
    """ResidualNet's mean over every position of padded maps: a textbook field of 37x37 on a 28x28 digit."""
    table = explain.receptive_field_table(zoo.ResidualNet()).splitlines()
    pooled = next(line for line in table if line.startswith("pool1 "))
    assert "all 28x28" in pooled, pooled
    assert "37x37" not in pooled, pooled
    assert table[-1] == ("clipped to the 28x28 image: the textbook field of pool1 is 37x37, reaching past the "
                         "image's edges, where there are no pixels to read")


def test_the_note_below_the_table_gives_the_first_field_past_the_image():
    """Fifteen padded 3x3s: the fourteenth sees 29x29, the fifteenth 31x31."""
    layers = [nn.Conv2d(1, 1, 3, padding=1) for _ in range(15)]
    table = explain.receptive_field_table(nn.Sequential(*layers, nn.Flatten(), nn.Linear(784, 10)))
    assert table.splitlines()[-1] == ("clipped to the 28x28 image: the textbook field of 13 is 29x29, reaching past "
                                      "the image's edges, where there are no pixels to read"), table


@pytest.mark.quick
def test_fields_inside_the_image_get_no_note():
    assert explain.receptive_field_table(Net()).splitlines()[-1].startswith("total parameters: ")


def test_the_command_run_from_another_folder_prints_nets_table(tmp_path):
    """Its default network, model:Net, is found beside the command, not in the folder it runs from."""
    run = subprocess.run([sys.executable, os.path.join(ROOT, "explain.py")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "conv4  conv           256x8x8            14x14    2x2   295,168" in run.stdout, run.stdout


@pytest.mark.quick
def test_a_network_that_cannot_be_built_is_refused_in_one_sentence_with_exit_2(capsys):
    assert explain_command.main(["--network", "my_s7.py:Net7"]) == 2, "bad input: exit 2, as the help says"
    err = capsys.readouterr().err.strip()
    assert err.startswith("explain.py: ") and "my_s7:Net7" in err and "\n" not in err, err


@pytest.mark.mnist
def test_the_faithfulness_command_prints_the_docs_table_of_the_first_test_digits(shipped, test_digits, capsys):
    """The table as docs/inside.md shows it, its figures faithfulness_table's on the first N test digits."""
    images, labels = test_digits
    assert explain_command.main(["--faithfulness", "--digits", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    with open(os.path.join(ROOT, "docs", "inside.md")) as f:
        docs = f.read().splitlines()
    assert lines[1:3] == docs[docs.index(lines[1]):docs.index(lines[1]) + 2], "docs/inside.md's heading and rule"
    rows = [re.fullmatch(r"\| (\w+) \| ([01]\.\d\d) \| ([01]\.\d\d) \| \d+\.\d ms \|", line) for line in lines[3:]]
    assert all(rows), f"rows of another form: {lines[3:]}"
    expected = explain.faithfulness_table(shipped, images[:3], labels[:3])
    assert [row.groups() for row in rows] == [(method, f"{left:.2f}", f"{random_left:.2f}")
                                             for method, left, random_left, _ in expected], "not the first 3 test digits"


@pytest.mark.quick
def test_the_faithfulness_table_is_on_200_digits_unless_told(monkeypatch):
    asked = []
    monkeypatch.setattr(explain_command, "print_faithfulness", lambda model, count: asked.append(count))
    explain_command.main(["--faithfulness"])
    assert asked == [200], "the 200 digits docs/inside.md's table is measured on"


@pytest.mark.quick
def test_a_digit_count_from_1_to_10000_is_taken():
    assert [explain_command.digit_count(text) for text in ("1", "10000")] == [1, 10000], "each end of the test set"


@pytest.mark.quick
@pytest.mark.parametrize("count", ["0", "10001", "ten", "-3"])
def test_a_digit_count_outside_the_test_set_is_refused_before_any_work_with_exit_2(count, capsys):
    with pytest.raises(SystemExit) as stopped:
        explain_command.main(["--faithfulness", "--digits", count])
    assert stopped.value.code == 2, "bad input: exit 2, as the help says"
    assert "give one from 1 to 10,000" in capsys.readouterr().err, "the sentence that says which counts there are"
