"""Pictures of what the network reads and computes, for the demo, the notebook and explain.py's plots.

    input_picture(network_input, box)     the 28x28 input as a person sees it, enlarged, a box outlined in red
    feature_map_grid(maps, unit=...)      a layer's most active maps, a clicked unit marked, with a colour scale
    unit_at(x, y, size)                   which map and unit a click on such a grid lands on
    attribution_picture(input, map)       red raised the digit's score, blue lowered it, with a colour scale
    digit_grid(count, cols)               the grid of small pictures every gallery of digits uses"""
import math

import numpy as np
from PIL import Image, ImageDraw

from data import MNIST_MEAN, MNIST_STD

SCALE = 10  # each input pixel becomes a 10x10 block: enlarged without smoothing
TILE = 84  # pixels of one feature map in a grid
LABEL = 14  # the channel numbers under a grid's maps
BAR = 30  # a colour scale: its gradient and the numbers at its ends
RED = (230, 30, 30)


def grey_levels(network_input):
    """The (28, 28) grey levels in [0, 1] that a normalized (1, 1, 28, 28) input shows, as a numpy array."""
    return (network_input.detach().float().cpu()[0, 0] * MNIST_STD + MNIST_MEAN).clamp(0, 1).numpy()


def _outline(picture, top, left, bottom, right, width=2):
    """Draws a red rectangle in place; the edges are the pixels top..bottom and left..right, inclusive."""
    for edge in (picture[top:top + width, left:right + 1], picture[bottom - width + 1:bottom + 1, left:right + 1],
                 picture[top:bottom + 1, left:left + width], picture[top:bottom + 1, right - width + 1:right + 1]):
        edge[...] = RED


def input_picture(network_input, box=None):
    """The normalized (1, 1, 28, 28) input as the grey digit it is, each pixel a SCALE x SCALE block (RGB uint8),
    with `box` (top, left, bottom, right: inclusive input pixels) outlined in red."""
    grey = (grey_levels(network_input) * 255).round().astype(np.uint8)
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
    """A layer's `count` most active channels for one image, after the ReLU that follows them (what the next
    layer reads), on one shared scale shown beneath, with each channel's number. `maps` is (channels, height,
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
        size = maps.shape[-1]
        _outline(picture, row * TILE // size, index * TILE + col * TILE // size,
                 (row + 1) * TILE // size - 1, index * TILE + (col + 1) * TILE // size - 1)
    bar = colour_bar("viridis", 0.0, high, picture.shape[1], "0 (silent)", f"{high:.2f} (strongest here)")
    return np.concatenate([picture, bar]), channels


def unit_at(x, y, size):
    """(map index, row, col) of the unit under pixel (x, y) of a feature_map_grid picture of a size x size
    layer, or None off the maps (the channel numbers and the colour scale)."""
    if not 0 <= y < TILE or x < 0:
        return None
    return int(x // TILE), int(y * size // TILE), int((x % TILE) * size // TILE)


def attribution_picture(network_input, map_28):
    """An attribution map over the input: red where a pixel raised the digit's score, blue where it lowered
    it, on a scale symmetric around zero shown beneath, blended with the digit's strokes."""
    grey = grey_levels(network_input)[..., None]
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

