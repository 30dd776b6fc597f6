"""Every picture the demo and the notebook show, against reference pixels computed here another way; every
grid's click against the unit it must pick."""
import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from s5 import pictures
from s5.data import MNIST_MEAN, MNIST_STD
from s5.pictures import plot_confusion_matrix, plot_loss
from s5.training import per_class_accuracy

TILE, SCALE, RED = pictures.TILE, pictures.SCALE, list(pictures.RED)

pytestmark = pytest.mark.quick  # every test here takes well under a second


def normalized(grey):
    return ((torch.as_tensor(grey, dtype=torch.float32) / 255 - MNIST_MEAN) / MNIST_STD).view(1, 1, 28, 28)


def red_box(picture):
    rows, cols = (picture == RED).all(axis=2).nonzero()
    return rows.min(), cols.min(), rows.max(), cols.max()


def test_the_input_picture_shows_the_grey_levels_the_network_read(mnist_test):
    digit = mnist_test.data[0].numpy()
    picture = pictures.input_picture(normalized(digit))
    assert picture.shape == (280, 280, 3)
    assert picture.dtype == np.uint8
    for channel in range(3):  # each input pixel a 10x10 block of its own grey level, unsmoothed
        assert np.array_equal(picture[..., channel], np.kron(digit, np.ones((10, 10), np.uint8)))


def test_the_input_picture_outlines_a_box_and_nothing_else(mnist_test):
    digit = mnist_test.data[0].numpy()
    plain = pictures.input_picture(normalized(digit))
    boxed = pictures.input_picture(normalized(digit), (6, 10, 19, 23))
    assert red_box(boxed) == (60, 100, 199, 239)  # input rows 6-19 and columns 10-23, 10 pixels each
    outline = np.zeros((280, 280), bool)
    outline[60:200, 100:240] = True
    outline[62:198, 102:238] = False  # two pixels wide
    assert (boxed[outline] == RED).all()
    assert np.array_equal(boxed[~outline], plain[~outline])


def viridis(values, high):
    values = np.atleast_1d(values)  # a colour map gives a tuple for a lone number
    return (matplotlib.colormaps["viridis"](np.clip(values / high, 0, 1))[..., :3] * 255).astype(np.uint8)


def test_a_feature_map_grid_shows_each_map_after_its_relu_on_one_scale():
    torch.manual_seed(0)
    maps = torch.randn(16, 8, 8)
    grid, channels = pictures.feature_map_grid(maps)
    relu = maps.relu()
    assert channels == relu.mean(dim=(1, 2)).argsort(descending=True)[:8].tolist()  # the most active first
    high = relu[channels].max().item()
    assert grid.shape == (TILE + pictures.LABEL + pictures.BAR, 8 * TILE, 3)
    for i, channel in enumerate(channels):
        tile = grid[:TILE, i * TILE:(i + 1) * TILE]
        expected = viridis(relu[channel].numpy(), high)
        centres = [int((k + 0.5) * TILE / 8) for k in range(8)]  # unsmoothed: each block's centre is its unit
        assert np.array_equal(tile[np.ix_(centres, centres)], expected), f"map {i}"
    bar = grid[TILE + pictures.LABEL:]
    assert np.array_equal(bar[2, 4], viridis(0.0, high)[0])
    assert np.array_equal(bar[2, -5], viridis(high, high)[0])


def test_a_marked_unit_is_outlined_on_its_own_map_only():
    maps = torch.rand(8, 8, 8)
    plain, _ = pictures.feature_map_grid(maps)
    marked, _ = pictures.feature_map_grid(maps, unit=(2, 3, 5))
    top, left, bottom, right = red_box(marked)
    assert (top, bottom) == (3 * TILE // 8, 4 * TILE // 8 - 1)
    assert (left, right) == (2 * TILE + 5 * TILE // 8, 2 * TILE + 6 * TILE // 8 - 1)
    changed = (marked != plain).any(axis=2)
    assert changed[top:bottom + 1, left:right + 1].sum() == changed.sum()


@pytest.mark.parametrize("size", [26, 24, 10, 8])
def test_a_click_on_each_grid_picks_the_unit_under_it(size):
    for index in range(8):
        for row, col in [(0, 0), (size - 1, size - 1), (size // 2, size // 3)]:
            x = index * TILE + (col + 0.5) * TILE / size
            y = (row + 0.5) * TILE / size
            assert pictures.unit_at(x, y, size) == (index, row, col)
    assert pictures.unit_at(5, TILE + 3, size) is None  # a channel number under the maps
    assert pictures.unit_at(5, TILE + pictures.LABEL + 10, size) is None  # the colour scale
    assert pictures.unit_at(-1, 5, size) is None


def test_the_attribution_picture_is_red_where_a_pixel_raised_the_score(mnist_test):
    digit = mnist_test.data[0].numpy()
    attribution = torch.zeros(28, 28)
    attribution[5, 5], attribution[20, 20] = 2.0, -1.0
    picture = pictures.attribution_picture(normalized(digit), attribution)
    assert picture.shape == (280 + pictures.BAR, 280, 3)
    grey = digit[..., None] / 255.0
    heat = matplotlib.colormaps["RdBu_r"]((attribution.numpy() + 2) / 4)[..., :3] * 255
    expected = (heat.astype(np.uint8).astype(np.float32) * (1 - 0.35 * grey) + 0.35 * grey * 40).clip(0, 255)
    assert np.array_equal(picture[:280:10, :280:10], expected.astype(np.uint8))
    assert picture[55, 55, 0] > 2 * picture[55, 55, 2]  # raised: red
    assert picture[205, 205, 2] > picture[205, 205, 0]  # lowered: blue


def test_the_attribution_scale_is_symmetric_about_zero_when_most_values_are_negative():
    """A map that mostly lowered the score: zero stays the scale's middle (white), not its top or bottom."""
    attribution = torch.full((28, 28), -1.0)
    attribution[0, 0], attribution[0, 1] = 0.0, 0.25
    black = torch.full((1, 1, 28, 28), -MNIST_MEAN / MNIST_STD)  # no ink: the colours alone
    picture = pictures.attribution_picture(black, attribution)
    colour = lambda value: (np.asarray(matplotlib.colormaps["RdBu_r"]((value + 1) / 2))[:3] * 255).astype(np.uint8)
    assert np.array_equal(picture[5, 5], colour(0.0))
    assert np.array_equal(picture[5, 15], colour(0.25))
    assert np.array_equal(picture[100, 100], colour(-1.0))
    assert np.array_equal(picture[280:], pictures.colour_bar("RdBu_r", -1.0, 1.0, 280, "-1 lowered", "raised +1"))


def test_the_attribution_scale_follows_the_maps_largest_magnitude_however_small():
    """Integrated gradients and saliency give values far below 1: the strongest pixel still takes the scale's end."""
    attribution = torch.zeros(28, 28)
    attribution[5, 5], attribution[20, 20] = 2.0, -1.0
    black = torch.full((1, 1, 28, 28), -MNIST_MEAN / MNIST_STD)  # no ink: the colours alone
    large = pictures.attribution_picture(black, attribution)
    small = pictures.attribution_picture(black, attribution / 1000)
    assert np.array_equal(small[:280], large[:280]), "a thousandth of the map gave other colours"


def test_a_digit_grid_has_room_for_each_picture():
    for count, cols, rows in [(1, 5, 1), (5, 5, 1), (6, 5, 2), (20, 5, 4), (0, 5, 1)]:
        fig, axes = pictures.digit_grid(count, cols)
        assert len(axes) == count
        assert len(fig.axes) == rows * cols
        assert not any(ax.axison for ax in fig.axes)
        assert tuple(fig.get_size_inches()) == pytest.approx((2 * cols, 2.3 * rows))  # 2 inches a picture, a title
        matplotlib.pyplot.close(fig)
    fig, axes = pictures.digit_grid(1, cols=1)  # one row of one: still a list of axes
    assert len(axes) == 1
    assert not axes[0].axison
    matplotlib.pyplot.close(fig)


def white_with_text(width, height, texts):
    """The reference for the numbers under a picture: a white strip with each (xy, text, anchor) in black."""
    strip = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for xy, text, anchor in texts:
        draw.text(xy, text, fill=(0, 0, 0), anchor=anchor)
    return np.asarray(strip).copy()


def test_a_colour_scale_runs_from_low_to_high_with_its_end_values_beneath():
    width = 300
    bar = pictures.colour_bar("viridis", 0.0, 0.5, width, "0 (silent)", "0.50 (strongest here)")
    expected = white_with_text(width, pictures.BAR, [((4, 15), "0 (silent)", None),
                                                     ((width - 4, 15), "0.50 (strongest here)", "ra")])
    expected[2:14, 4:width - 4] = viridis(np.linspace(0.0, 0.5, width - 8), 0.5)  # 12 rows, below 1: not clipped
    assert np.array_equal(bar, expected)


def test_a_feature_map_grid_numbers_each_map_beneath_it_and_scales_maps_below_one():
    maps = torch.zeros(3, 4, 4)
    maps[0, 0, 0], maps[1, 1, 1], maps[2] = 0.3, 0.2, 0.05  # every value below 1
    grid, channels = pictures.feature_map_grid(maps)
    assert channels == [2, 0, 1]  # by mean activation: 0.05, 0.3/16, 0.2/16
    labels = white_with_text(3 * TILE, pictures.LABEL, [((i * TILE + 3, 1), f"ch {c}", None)
                                                        for i, c in enumerate(channels)])
    assert np.array_equal(grid[TILE:TILE + pictures.LABEL], labels)
    assert np.array_equal(grid[0, 0], viridis(0.05, 0.3)[0])
    assert np.array_equal(grid[0, TILE], viridis(0.3, 0.3)[0])
    assert np.array_equal(grid[TILE + pictures.LABEL:], pictures.colour_bar("viridis", 0.0, 0.3, 3 * TILE,
                                                                             "0 (silent)", "0.30 (strongest here)"))


def test_an_input_outside_the_grey_range_shows_as_black_or_white_never_wrapped():
    grey = torch.full((28, 28), 0.5)
    grey[0, 0], grey[27, 27] = -0.5, 1.5  # what no image gives, but an edited tensor might
    picture = pictures.input_picture(((grey - MNIST_MEAN) / MNIST_STD).view(1, 1, 28, 28))
    assert (picture[0, 0] == 0).all()
    assert (picture[279, 279] == 255).all()
    assert (picture[140, 140] == 128).all()


def test_a_click_on_the_top_row_of_pixels_is_on_the_maps():
    assert pictures.unit_at(TILE + 1, 0, 8) == (1, 0, 0)
    assert pictures.unit_at(0, TILE - 0.5, 8) == (0, 7, 0)
    assert pictures.unit_at(0, TILE, 8) is None  # the first row of the channel numbers


def test_the_confusion_matrix_picture_shows_readable_counts_beside_each_digits_accuracy():
    matrix = torch.diag(torch.full((10,), 1000))
    matrix[3, 5] = 20  # twenty threes read as fives
    figure = plot_confusion_matrix(matrix)
    ax, bar = figure.axes
    assert tuple(figure.get_size_inches()) == (14, 6)
    assert ax.get_subplotspec().get_gridspec().get_width_ratios() == [3, 2]
    assert ax.get_images()[0].get_cmap().name == "Blues"
    assert np.allclose(ax.get_images()[0].get_array(), matrix.float().log1p().numpy())
    texts = {tuple(t.get_position()): t for t in ax.texts}
    # on a log scale, white on the dark cells (above half the darkest), black elsewhere
    assert texts[(3, 3)].get_text() == "1000"
    assert texts[(3, 3)].get_color() == "white"
    assert texts[(5, 3)].get_text() == "20"
    assert texts[(5, 3)].get_color() == "black"
    assert texts[(0, 3)].get_text() == "0"
    assert texts[(0, 3)].get_color() == "black"
    assert all((t.get_ha(), t.get_va(), t.get_fontsize()) == ("center", "center", 8) for t in ax.texts)
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("predicted digit", "true digit",
                                                                   "Confusion matrix (test set)")
    assert list(ax.get_xticks()) == list(range(10))
    assert list(ax.get_yticks()) == list(range(10))
    assert [round(p.get_width(), 2) for p in bar.patches] == [100.0] * 3 + [98.04] + [100.0] * 6
    assert bar.texts[3].get_text() == " 98.04%"
    assert bar.texts[3].get_position() == (pytest.approx(98.04, abs=0.01), 3)
    assert bar.get_xlim() == pytest.approx((96.04, 100.5), abs=0.01)
    assert bar.yaxis_inverted()
    assert list(bar.get_yticks()) == list(range(10))
    assert (bar.get_xlabel(), bar.get_title()) == ("accuracy (%)", "Accuracy per digit")
    matplotlib.pyplot.close(figure)
    assert per_class_accuracy(torch.zeros(10, 10, dtype=torch.int64)).tolist() == [0.0] * 10  # no sample: no error
    assert per_class_accuracy(torch.eye(10, dtype=torch.int64)).tolist() == [100.0] * 10


def test_plot_loss_has_the_four_titled_axes():
    figure = plot_loss([1.0, 0.5], [80.0, 90.0], [0.6, 0.4], [85.0, 95.0])
    assert [ax.get_title() for ax in figure.axes] == ["Training Loss", "Training Accuracy", "Test Loss", "Test Accuracy"]
    assert list(figure.axes[3].lines[0].get_ydata()) == [85.0, 95.0]
    assert [ax.get_xlabel() for ax in figure.axes] == ["epoch"] * 4
    assert tuple(figure.get_size_inches()) == (15, 10)  # the original's figure
    matplotlib.pyplot.close(figure)


def test_the_mistakes_plot_shows_twenty_in_rows_of_five_unless_told():
    """The original's plot of misclassified digits: 20 of them, 4 rows of 5, however many there were."""
    wrong = {"images": [torch.zeros(1, 28, 28)] * 25, "ground_truths": [1] * 25, "predicted_vals": [7] * 25,
             "probabilities": [0.9] * 25}
    figure = pictures.plot_incorrect(wrong)
    shown = [ax for ax in figure.axes if ax.get_images()]
    assert len(shown) == 20, f"{len(shown)} pictures"
    assert figure.axes[0].get_subplotspec().get_gridspec().get_geometry() == (4, 5), "4 rows of 5"
    matplotlib.pyplot.close(figure)
