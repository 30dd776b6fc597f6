"""Every picture the project draws: what the network reads and computes (for the demo, the notebook and
explain.py's plots) and how a run went (the original's loss plot, the mistakes, the confusion matrix). One
function a picture; each is tested against the pixels or the numbers it is drawn from."""
import math

import numpy as np
from PIL import Image, ImageDraw

from s5 import data
from s5.training import per_class_accuracy

SCALE = 10  # each input pixel becomes a 10x10 block: enlarged without smoothing
TILE = 84  # pixels of one feature map in a grid
LABEL = 14  # the channel numbers under a grid's maps
BAR = 30  # a colour scale: its gradient and the numbers at its ends
RED = (230, 30, 30)


def grey_array(network_input):
    """The (28, 28) grey levels in [0, 1] that a normalized (1, 1, 28, 28) input shows, as a numpy array."""
    return data.grey_levels(network_input.detach().float().cpu()[0, 0]).numpy()


def _outline(picture, top, left, bottom, right, width=2):
    """Draws a red rectangle in place; the edges are the pixels top..bottom and left..right, inclusive."""
    for edge in (picture[top:top + width, left:right + 1], picture[bottom - width + 1:bottom + 1, left:right + 1],
                 picture[top:bottom + 1, left:left + width], picture[top:bottom + 1, right - width + 1:right + 1]):
        edge[...] = RED


def input_picture(network_input, box=None):
    """The normalized (1, 1, 28, 28) input as the grey digit it is, each pixel a SCALE x SCALE block (RGB uint8),
    with `box` (top, left, bottom, right: inclusive input pixels) outlined in red."""
    grey = (grey_array(network_input) * 255).round().astype(np.uint8)
    picture = np.kron(grey, np.ones((SCALE, SCALE), np.uint8))[..., None].repeat(3, axis=2)
    if box is not None:
        top, left, bottom, right = box
        _outline(picture, top * SCALE, left * SCALE, bottom * SCALE + SCALE - 1, right * SCALE + SCALE - 1)
    return picture


def _colour(values, cmap, low, high):
    import matplotlib
    scaled = np.clip((np.asarray(values, np.float32) - low) / max(high - low, 1e-12), 0, 1)
    return (matplotlib.colormaps[cmap](scaled)[..., :3] * 255).astype(np.uint8)


def colour_bar(cmap, low, high, width, left_text, right_text):
    """A strip BAR pixels high: the colour map from `low` to `high` across `width`, its end values beneath."""
    strip = Image.new("RGB", (width, BAR), "white")
    gradient = _colour(np.linspace(low, high, width - 8)[None].repeat(12, axis=0), cmap, low, high)
    strip.paste(Image.fromarray(gradient), (4, 2))
    draw = ImageDraw.Draw(strip)
    draw.text((4, 15), left_text, fill="black")
    draw.text((width - 4, 15), right_text, fill="black", anchor="ra")
    return np.asarray(strip)


def feature_map_grid(maps, count=8, unit=None):
    """A layer's `count` most active channels for one image, negative values shown as 0 (the ReLU that follows
    them), on one shared scale shown beneath, with each channel's number. `maps` is (channels, height,
    width); unit: (map index, row, col) to mark in red, as unit_at gives it. Returns (RGB uint8, channels)."""
    maps = maps.detach().float().cpu().relu()
    channels = maps.mean(dim=(1, 2)).topk(min(count, len(maps))).indices.tolist()
    high = maps[channels].max().item()
    grid = Image.new("RGB", (len(channels) * TILE, TILE + LABEL), "white")
    draw = ImageDraw.Draw(grid)
    for i, channel in enumerate(channels):
        tile = Image.fromarray(_colour(maps[channel], "viridis", 0.0, high)).resize((TILE, TILE), Image.NEAREST)
        grid.paste(tile, (i * TILE, 0))
        draw.text((i * TILE + 3, TILE + 1), f"ch {channel}", fill="black")
    picture = np.array(grid)
    if unit is not None:
        index, row, col = unit
        height, width = maps.shape[-2:]
        _outline(picture, row * TILE // height, index * TILE + col * TILE // width,
                 (row + 1) * TILE // height - 1, index * TILE + (col + 1) * TILE // width - 1)
    bar = colour_bar("viridis", 0.0, high, picture.shape[1], "0 (silent)", f"{high:.2f} (strongest here)")
    return np.concatenate([picture, bar]), channels


def unit_at(x, y, height, width=None):
    """(map index, row, col) of the unit under pixel (x, y) of a feature_map_grid picture of a layer whose maps
    are height x width (width: the height, by default), or None off the maps (the channel numbers, the scale)."""
    if not 0 <= y < TILE or x < 0:
        return None
    return int(x // TILE), int(y * height // TILE), int((x % TILE) * (width or height) // TILE)


def attribution_picture(network_input, map_28):
    """An attribution map over the input: red where a pixel raised the digit's score, blue where it lowered
    it, on a scale symmetric around zero shown beneath, blended with the digit's strokes."""
    grey = grey_array(network_input)[..., None]
    limit = max(map_28.abs().max().item(), 1e-12)
    heat = _colour(map_28.float().cpu(), "RdBu_r", -limit, limit).astype(np.float32)
    blended = (heat * (1 - 0.35 * grey) + 0.35 * grey * 40).clip(0, 255).astype(np.uint8)  # ink as a darker trace
    picture = np.kron(blended, np.ones((SCALE, SCALE, 1), np.uint8))
    bar = colour_bar("RdBu_r", -limit, limit, picture.shape[1], f"-{limit:.2g} lowered", f"raised +{limit:.2g}")
    return np.concatenate([picture, bar])


def digit_grid(count, cols=5):
    """A figure of `count` small pictures in rows of `cols`, axes off; returns (figure, axes for the pictures)."""
    import matplotlib.pyplot as plt
    rows = max(1, math.ceil(count / cols))
    fig, axs = plt.subplots(rows, cols, figsize=(2 * cols, 2.3 * rows), squeeze=False)
    for ax in axs.flat:
        ax.axis("off")
    return fig, list(axs.flat)[:count]



def plot_loss(train_losses, train_acc, test_losses, test_acc):
    """The original's 2x2 figure of losses and accuracies per epoch; returns the figure."""
    import matplotlib.pyplot as plt
    fig, axs = plt.subplots(2, 2, figsize=(15, 10))
    for ax, values, title in [(axs[0, 0], train_losses, "Training Loss"),
                              (axs[0, 1], train_acc, "Training Accuracy"),
                              (axs[1, 0], test_losses, "Test Loss"),
                              (axs[1, 1], test_acc, "Test Accuracy")]:
        ax.plot(values)
        ax.set_title(title)
        ax.set_xlabel("epoch")
    return fig


def plot_runs(histories):
    """Test accuracy per epoch of several runs, a line each: histories maps a run's label to its history (the
    record's lists per epoch); returns the figure."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 5))
    for label, history in histories.items():
        ax.plot(range(1, len(history["test_acc"]) + 1), history["test_acc"], marker=".", label=label)
    ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def plot_incorrect(incorrect_pred, count=20, cols=5):
    """A grid of misclassified digits, each titled 'label -> prediction (probability)'."""
    count = min(count, len(incorrect_pred["images"]))
    fig, axes = digit_grid(count, cols)
    for i, ax in enumerate(axes):
        ax.imshow(incorrect_pred["images"][i].squeeze(0).numpy(), cmap="gray")
        ax.set_title(f"{incorrect_pred['ground_truths'][i]} -> {incorrect_pred['predicted_vals'][i]}"
                     f" ({incorrect_pred['probabilities'][i]:.2f})")
    fig.suptitle(f"{len(incorrect_pred['images'])} misclassified test digits: label -> prediction (probability)")
    fig.tight_layout()
    return fig


def plot_confusion_matrix(matrix):
    """The confusion matrix with its counts, beside the accuracy of each digit; returns the figure."""
    import matplotlib.pyplot as plt
    fig, (ax, bar) = plt.subplots(1, 2, figsize=(14, 6), gridspec_kw={"width_ratios": [3, 2]})
    shade = matrix.float().log1p()  # a log scale, so that the few mistakes show beside the diagonal
    ax.imshow(shade.numpy(), cmap="Blues")
    threshold = shade.max().item() / 2
    for true in range(10):
        for pred in range(10):
            value = matrix[true, pred].item()
            ax.text(pred, true, str(value), ha="center", va="center", fontsize=8,
                    color="white" if math.log1p(value) > threshold else "black")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title("Confusion matrix (test set)")
    accuracy = per_class_accuracy(matrix)
    bar.barh(range(10), accuracy.tolist(), color="tab:blue")
    for digit, value in enumerate(accuracy.tolist()):
        bar.text(value, digit, f" {value:.2f}%", va="center", fontsize=8)
    bar.set_xlim(max(0.0, accuracy.min().item() - 2), 100.5)
    bar.set_yticks(range(10))
    bar.invert_yaxis()
    bar.set_xlabel("accuracy (%)")
    bar.set_title("Accuracy per digit")
    fig.tight_layout()
    return fig
