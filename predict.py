"""Reads handwritten digits from ordinary image files with a trained network (the shipped Net by default).

    python predict.py my_digit.png [more.jpg ...]        # path, digit, probability, top three
    python predict.py my_digit.png --json                 # a JSON list, one object per image
    python predict.py my_digit.png --checkpoint other.pt  # other weights (default: the shipped s5_net.pt)
    python predict.py my_digit.png --checkpoint my_net6.pt   # your own network's run: its record names the class

From Python: `from predict import predict; digit, probabilities = predict("my_digit.png")`; it also takes
a PIL image or an array. Images are prepared the way MNIST itself was made: grey, white ink on black,
cropped to the ink, scaled to fit 20x20, centred by centre of mass in 28x28, then normalized.

Exit status: 0 when every image was read; 1 when one could not be (its line says why); 2 for a network or weights
that cannot be loaded, said in one sentence."""
import argparse
import functools
import json
import os
import sys
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from s5 import networks
from s5.data import normalize

DEFAULT_WEIGHTS = networks.DEFAULT_WEIGHTS
MIN_CONTRAST = 0.1  # ink must differ from the background by a tenth of the grey range
INK_THRESHOLD = 0.2  # fraction of the strongest ink that counts when cropping


class ImageError(ValueError):
    """An image that cannot be read as a digit; the message says why."""


def read_image(path):
    """Opens an image file fully, turning PIL's many failures into one ImageError sentence."""
    try:
        with warnings.catch_warnings():
            # PIL only warns between MAX_IMAGE_PIXELS and twice that; refuse those too
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                return image.copy()
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except IsADirectoryError:
        raise ImageError("is a folder, not an image file") from None
    except UnidentifiedImageError:
        raise ImageError("not an image that PIL can read (use PNG, JPEG, BMP, GIF or TIFF)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"image too large to decode safely (over {Image.MAX_IMAGE_PIXELS:,} pixels, "
                         "possibly a decompression bomb); scale it down first") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"truncated or damaged image ({e})") from None


def to_grey(image):
    """(H, W) float tensor in [0, 1] from a path, a PIL image or an array (H, W) or (H, W, 3|4)."""
    if isinstance(image, (str, os.PathLike)):
        image = read_image(image)
    elif isinstance(image, (np.ndarray, torch.Tensor)):
        array = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image)
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
            raise ImageError(f"array of shape {array.shape}: expected (H, W), (H, W, 3) or (H, W, 4)")
        if array.dtype != np.uint8:
            # to the nearest level, not truncated: 0.999 is white (254.7 is level 255), not the level below
            levels = np.rint(array.astype(np.float32) * (255.0 if array.max() <= 1.0 else 1.0))
            array = np.clip(levels, 0, 255).astype(np.uint8)
        image = Image.fromarray(array.squeeze(2) if array.ndim == 3 and array.shape[2] == 1 else array)
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        # Transparent pixels are paper, not ink. The paper takes the shade opposite to the opaque pixels,
        # so that white ink on a transparent page does not vanish into white paper.
        image = image.convert("RGBA")
        rgba = np.asarray(image)
        opaque = rgba[..., :3][rgba[..., 3] > 127]
        paper = "black" if opaque.size and opaque.mean() > 127 else "white"
        image = Image.alpha_composite(Image.new("RGBA", image.size, paper), image)
    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    return torch.from_numpy(grey.copy())


def preprocess(image):
    """A (1, 1, 28, 28) normalized tensor, made from a user's image the way MNIST was made."""
    grey = to_grey(image)
    border = torch.cat([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if border.median() > 0.5:  # dark ink on light paper: MNIST is white ink on black
        grey, border = 1.0 - grey, 1.0 - border
    ink = (grey - border.median()).clamp(min=0)
    if ink.max() < MIN_CONTRAST:
        raise ImageError("blank image: no ink found (the digit must be darker or lighter than the paper)")
    ink = ink / ink.max()
    rows = torch.nonzero((ink > INK_THRESHOLD).any(dim=1)).flatten()
    cols = torch.nonzero((ink > INK_THRESHOLD).any(dim=0)).flatten()
    ink = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    scale = 20.0 / max(ink.shape)
    height, width = (max(1, round(side * scale)) for side in ink.shape)
    digit = F.interpolate(ink[None, None], size=(height, width), mode="bilinear", antialias=True,
                          align_corners=False)[0, 0]  # weights of one sign that sum to 1: stays in [0, 1]
    # MNIST's digits have their centre of mass at pixel (14, 14)
    mass = digit.sum()
    com_y = (digit.sum(dim=1) * torch.arange(height)).sum() / mass
    com_x = (digit.sum(dim=0) * torch.arange(width)).sum() / mass
    top = min(max(round(14 - com_y.item()), 0), 28 - height)
    left = min(max(round(14 - com_x.item()), 0), 28 - width)
    canvas = torch.zeros(28, 28)
    canvas[top:top + height, left:left + width] = digit
    return normalize(canvas).view(1, 1, 28, 28)


@functools.lru_cache(maxsize=4)
def load_model(checkpoint=DEFAULT_WEIGHTS, network=networks.DEFAULT):
    """The network with the weights of a checkpoint, in eval mode on the CPU (raises networks.NetworkError)."""
    return networks.load(network, checkpoint)


def read_digit(image, model=None):
    """(digit, ten probabilities, the (1, 1, 28, 28) tensor the network read) for a path, a PIL image or
    an array; model defaults to the shipped weights."""
    if model is None:
        model = load_model()
    network_input = preprocess(image)
    with torch.inference_mode():
        probabilities = model(network_input).float().softmax(dim=1)[0]  # log-probabilities or plain scores
    return int(probabilities.argmax()), probabilities.tolist(), network_input


def predict(image, model=None):
    """(digit, ten probabilities) for a path, a PIL image or an array; model defaults to the shipped weights."""
    digit, probabilities, _ = read_digit(image, model)
    return digit, probabilities


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...) showing one digit each")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of lines")
    args, model = networks.from_command_line(parser, argv, "predict.py")
    if model is None:
        return 2
    results, failed = [], False
    for path in args.images:
        try:
            digit, probabilities = predict(path, model)
        except ImageError as e:
            print(f"{path}: {e}", file=sys.stderr)
            results.append({"path": path, "error": str(e)})
            failed = True
            continue
        results.append({"path": path, "digit": digit, "probabilities": probabilities})
        if not args.json:
            top = sorted(range(10), key=lambda d: -probabilities[d])[:3]
            print(f"{path}: {digit} ({probabilities[digit]:.1%}); top three: "
                  + ", ".join(f"{d} {probabilities[d]:.1%}" for d in top))
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # the reader stopped early (| head): no traceback, and none when Python flushes at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
