import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from model import Net
import predict
from utils import GetCorrectPredCount
from s5.checkpoint import load_checkpoint, save_checkpoint
from s5.data import MNIST_MEAN, MNIST_STD
from s5.fast import DeviceLoader
from helpers import ROOT, help_words
from inputs import user_image
from zoo import net_with_zero_weights


def test_shipped_weights_reach_their_stated_accuracy(mnist_test):
    model = Net()
    state = load_checkpoint(predict.DEFAULT_WEIGHTS, model)
    assert state["test_accuracy"] >= 99.2
    model = model.eval().to(memory_format=torch.channels_last)  # the same answers, 1.6x faster on a CPU
    with torch.inference_mode():
        correct = sum(GetCorrectPredCount(model(d), t) for d, t in DeviceLoader(mnist_test, 1000, "cpu"))
    # this machine's float arithmetic may differ from the training machine's by a digit or two
    assert abs(correct / 100 - state["test_accuracy"]) <= 0.03


def test_reads_mnist_digits_redrawn_as_user_images(mnist_test, tmp_path):
    rng = np.random.default_rng(0)
    picks = rng.choice(len(mnist_test), size=400, replace=False)
    correct = 0
    for i, index in enumerate(picks):
        size = (40, 64, 100, 180)[i % 4]
        kind = ("png-grey", "png-rgb", "jpeg-rgb", "png-grey")[(i // 4) % 4]
        image = user_image(mnist_test.data[index], rng, size, "L" if kind == "png-grey" else "RGB")
        path = tmp_path / f"{i}.{'jpg' if kind.startswith('jpeg') else 'png'}"
        image.save(path, quality=90) if kind.startswith("jpeg") else image.save(path)
        digit, probabilities = predict.predict(str(path))
        correct += digit == mnist_test.targets[index].item()
    accuracy = correct / len(picks)
    print(f"re-drawn MNIST test digits read right: {accuracy:.1%}")
    assert accuracy >= 0.95


@pytest.mark.quick
def test_preprocessing_turns_an_mnist_digit_back_into_itself(mnist_test):
    digit = mnist_test.data[0]
    prepared = predict.preprocess(Image.fromarray(255 - digit.numpy()).resize((112, 112), Image.BILINEAR))
    restored = prepared[0, 0] * 0.3081 + 0.1307
    assert prepared.shape == (1, 1, 28, 28)
    assert (restored - digit.float() / 255).abs().mean() < 0.08


@pytest.mark.quick
def test_predict_takes_a_path_a_pil_image_or_an_array(mnist_test, tmp_path):
    image = user_image(mnist_test.data[0], np.random.default_rng(1), 64, "L")  # a 7
    image.save(tmp_path / "seven.png")
    from_path = predict.predict(str(tmp_path / "seven.png"))
    assert from_path[0] == 7
    assert len(from_path[1]) == 10
    assert sum(from_path[1]) == pytest.approx(1, abs=1e-5)
    assert predict.predict(image) == from_path
    assert predict.predict(np.asarray(image)) == from_path
    assert predict.predict(np.asarray(image.convert("RGB"))) == from_path
    assert predict.predict(np.asarray(image, dtype=np.float32) / 255) == from_path  # floats from 0 to 1
    assert predict.predict(np.asarray(image)[..., None]) == from_path  # (H, W, 1)
    assert predict.predict(np.asarray(image, dtype=np.float32)) == from_path  # floats from 0 to 255
    assert predict.predict(torch.from_numpy(np.asarray(image).copy())) == from_path
    assert predict.predict(torch.tensor(np.asarray(image) / 255.0, requires_grad=True)) == from_path
    for shape in [(3, 28, 28), (28,), (28, 28, 2)]:
        with pytest.raises(predict.ImageError) as error:
            predict.predict(np.zeros(shape, np.uint8))
        assert str(error.value) == f"array of shape {shape}: expected (H, W), (H, W, 3) or (H, W, 4)"


def test_an_arrays_floats_read_as_the_nearest_8_bit_level():
    assert predict.to_grey(np.full((2, 2), 0.999)).mul(255).eq(255).all(), "0.999 of white is 254.7: level 255"


def test_an_arrays_values_beyond_black_and_white_read_as_black_and_white(mnist_test):
    """Levels from 0 to 255 in floats, clipped, not wrapped around as 8-bit integers do: -20 is black, not grey."""
    levels = np.asarray(user_image(mnist_test.data[0], np.random.default_rng(1), 64, "L"), dtype=np.float32)
    beyond, clipped = levels.copy(), levels.copy()
    beyond[levels < 20], beyond[levels > 230], clipped[levels < 20], clipped[levels > 230] = -20, 300, 0, 255
    assert predict.to_grey(beyond).equal(predict.to_grey(clipped.astype(np.uint8))), "not clipped to 0-255"


def centre_of_mass(prepared):
    ink = prepared[0, 0] * 0.3081 + 0.1307
    rows, cols = torch.arange(28.0)[:, None], torch.arange(28.0)[None, :]
    return (ink * rows).sum().item() / ink.sum().item(), (ink * cols).sum().item() / ink.sum().item()


def test_the_centre_of_mass_lands_on_pixel_14_14_and_a_shift_on_the_page_changes_nothing(mnist_test):
    for index in range(20):
        page = Image.new("L", (160, 140), 255)
        ink = Image.fromarray(255 - mnist_test.data[index].numpy()).resize((84, 84), Image.BILINEAR)
        page.paste(ink, (30, 20))
        prepared = predict.preprocess(page)
        row, col = centre_of_mass(prepared)
        assert abs(row - 14) <= 0.5, (index, row, col)
        assert abs(col - 14) <= 0.5, (index, row, col)  # as MNIST's digits
        for dx, dy in [(1, 0), (0, 1), (-1, -1), (17, 9)]:
            moved = Image.new("L", page.size, 255)
            moved.paste(ink, (30 + dx, 20 + dy))
            assert torch.equal(predict.preprocess(moved), prepared), (index, dx, dy)


def mnist_recipe(ink):
    """The reference for preprocess, written with PIL and numpy: `ink` (H, W) in [0, 1], white on black, every
    nonzero pixel part of the digit. Crop to the ink, fit the longer side to 20 pixels (PIL's bilinear, which
    smooths when it shrinks), put the centre of mass at (14, 14), moved only as far as the 28x28 canvas allows.
    Returns the canvas and where the centre of mass wanted the digit's corner."""
    rows, cols = np.nonzero(ink.any(axis=1))[0], np.nonzero(ink.any(axis=0))[0]
    box = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].astype(np.float32)
    longer = max(box.shape)
    size = [max(1, round(side * 20 / longer)) for side in box.shape]
    digit = np.asarray(Image.fromarray(box, "F").resize(size[::-1], Image.BILINEAR))
    ys, xs = np.indices(digit.shape)
    wanted = round(14 - (digit * ys).sum() / digit.sum()), round(14 - (digit * xs).sum() / digit.sum())
    top, left = (min(max(corner, 0), 28 - side) for corner, side in zip(wanted, digit.shape))
    canvas = np.zeros((28, 28), np.float32)
    canvas[top:top + size[0], left:left + size[1]] = digit
    return canvas, wanted


def wedge(height, width, power=3):
    """A glyph whose rows widen as the power of their depth: its mass sits near the bottom edge."""
    glyph = np.zeros((height, width), np.uint8)
    for row in range(height):
        half = max(1, round(width / 2 * (row / (height - 1)) ** power))
        glyph[row, width // 2 - half:width // 2 + half] = 255
    return glyph


def test_preprocess_is_the_mnist_recipe_to_the_pixel(mnist_test):
    """Against a reference built with PIL: MNIST digits as two-tone glyphs of several sizes and shapes, dark on
    white, dark on grey or white on black paper; a one-pixel stroke; wedges whose mass lies at an edge, which
    the canvas stops from being centred."""
    glyphs = [np.asarray(Image.fromarray(np.where(mnist_test.data[i].numpy() > 127, 255, 0).astype(np.uint8))
                         .resize(size, Image.NEAREST)) for i, size in [(0, (70, 90)), (1, (120, 64)), (2, (33, 41))]]
    glyphs.append(np.full((100, 1), 255, np.uint8))  # a 1 drawn with a one-pixel pen
    wedges = [wedge(60, 40), wedge(60, 40)[::-1], wedge(60, 40).T, wedge(60, 40).T[:, ::-1]]
    clamped = []
    for glyph in glyphs + wedges:
        expected, wanted = mnist_recipe(glyph / 255.0)
        clamped.append(wanted)
        for ink, paper in [(0, 255), (0, 150), (255, 0)]:
            page = np.full((glyph.shape[0] + 37, glyph.shape[1] + 52), paper, np.uint8)
            page[20:20 + glyph.shape[0], 11:11 + glyph.shape[1]] = np.where(glyph > 0, ink, paper)
            restored = predict.preprocess(page)[0, 0] * MNIST_STD + MNIST_MEAN
            torch.testing.assert_close(restored, torch.from_numpy(expected), atol=1e-5, rtol=0,
                                       msg=f"glyph {glyph.shape}, ink {ink}, paper {paper}")
    (top0, _), (top1, _), (_, left2), (_, left3) = clamped[-4:]
    assert top0 < 0
    assert top1 > 28 - 20
    assert left2 < 0
    assert left3 > 28 - 20  # each wedge asks beyond one edge


@pytest.mark.quick
def test_a_mark_fainter_than_a_tenth_of_the_grey_range_is_blank():
    page = np.full((64, 64), 255, np.uint8)
    page[20:44, 30:34] = 255 - 24  # a pencil trace 24 grey levels darker than the paper
    with pytest.raises(predict.ImageError, match="^blank image: no ink found"):
        predict.preprocess(page)
    page[20:44, 30:34] = 255 - 27
    assert predict.preprocess(page).shape == (1, 1, 28, 28)


def test_transparent_paletted_and_rotated_files_read_as_the_plain_image(mnist_test, tmp_path):
    digit = mnist_test.data[3].numpy()  # a 0
    ink = np.asarray(Image.fromarray(digit).resize((90, 90), Image.BILINEAR))
    plain = tmp_path / "plain.png"
    Image.fromarray(255 - ink).save(plain)
    expected = predict.preprocess(str(plain))
    for name, colour in [("black_on_transparent.png", 0), ("white_on_transparent.png", 255)]:
        rgba = np.zeros((90, 90, 4), np.uint8)
        rgba[..., :3], rgba[..., 3] = colour, ink  # the drawing is all in the alpha channel
        Image.fromarray(rgba).save(tmp_path / name)
        torch.testing.assert_close(predict.preprocess(str(tmp_path / name)), expected, atol=0.02, rtol=0, msg=name)
    Image.fromarray(255 - ink).convert("P").save(tmp_path / "paletted.png")
    torch.testing.assert_close(predict.preprocess(str(tmp_path / "paletted.png")), expected, atol=0.02, rtol=0)
    # a GIF-style paletted image: entry 0 is the transparent paper (black in the palette, which only the
    # transparency makes paper), entry i ink of strength i; and grey with alpha (LA): black ink whose
    # opacity is the drawing
    gif = Image.fromarray(ink, "L").convert("P")
    gif.putpalette([0, 0, 0] + [255 - i for i in range(1, 256) for _ in range(3)])
    gif.save(tmp_path / "transparent_index.png", transparency=0)
    Image.fromarray(np.dstack([np.zeros_like(ink), ink]), "LA").save(tmp_path / "la.png")
    for name in ["transparent_index.png", "la.png"]:
        torch.testing.assert_close(predict.preprocess(str(tmp_path / name)), expected, atol=0.02, rtol=0, msg=name)
    pa = Image.new("PA", ink.shape[::-1])  # PIL's paletted-with-alpha, which only exists in memory
    pa.putpalette([0, 0, 0] * 256)
    pa.putdata([(0, int(alpha)) for alpha in ink.flatten()])
    torch.testing.assert_close(predict.preprocess(pa), expected, atol=0.02, rtol=0)
    # a phone photo: stored on its side, with the EXIF orientation that says how to turn it upright
    sideways = Image.fromarray(255 - ink).transpose(Image.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    sideways.save(tmp_path / "photo.jpg", exif=exif.tobytes(), quality=95)
    upright = predict.preprocess(str(tmp_path / "photo.jpg"))
    assert (upright - expected).abs().mean() < 0.1  # JPEG blocks of the turned picture; unturned: 0.39
    assert predict.predict(str(tmp_path / "white_on_transparent.png"))[0] == 0


@pytest.fixture
def run_cli(capsys):
    """predict.py's command line, run in this process (mutation testing follows no subprocess)."""
    def run(*args):
        returncode = predict.main(list(args))
        printed = capsys.readouterr()
        return subprocess.CompletedProcess(["predict.py", *args], returncode, printed.out, printed.err)
    return run


@pytest.mark.quick
def test_cli_answers_every_image_and_names_each_bad_one(mixed_images, run_cli):
    run = run_cli(*mixed_images)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    digit, p = predict.predict(mixed_images[0])
    top = sorted(range(10), key=lambda d: -p[d])[:3]
    assert digit == 2
    assert top[0] == 2
    assert p[top[1]] > p[top[2]] > max(p[d] for d in range(10) if d not in top)
    assert run.stdout == (f"{mixed_images[0]}: 2 ({p[2]:.1%}); top three: 2 {p[2]:.1%}, {top[1]} {p[top[1]]:.1%}, "
                          f"{top[2]} {p[top[2]]:.1%}\n")
    errors = run.stderr.strip().splitlines()
    assert len(errors) == 5
    expected = [re.escape("no such file"), re.escape("not an image that PIL can read (use PNG, JPEG, BMP, GIF or TIFF)"),
                r"truncated or damaged image \(.+\)",
                re.escape("blank image: no ink found (the digit must be darker or lighter than the paper)"),
                re.escape(f"image too large to decode safely (over {Image.MAX_IMAGE_PIXELS:,} pixels, possibly a "
                          "decompression bomb); scale it down first")]
    for path, error, sentence in zip(mixed_images[1:], errors, expected):
        assert re.fullmatch(re.escape(path + ": ") + sentence, error), error
    folder = os.path.dirname(mixed_images[0])
    assert run_cli(folder).stderr == f"{folder}: is a folder, not an image file\n"


def test_cli_json(mixed_images, run_cli):
    run = run_cli("--json", *mixed_images[:3])
    assert run.returncode == 1
    answers = json.loads(run.stdout)
    assert [a["path"] for a in answers] == mixed_images[:3]
    assert answers[0]["digit"] == 2
    assert len(answers[0]["probabilities"]) == 10
    assert sum(answers[0]["probabilities"]) == pytest.approx(1, abs=1e-4)
    assert set(answers[1]) == {"path", "error"}
    assert "no such file" in answers[1]["error"]
    assert run_cli("--json", mixed_images[0]).returncode == 0


def test_the_script_runs_as_a_command(mixed_images):
    """From another folder than the repository's: the shipped weights are found all the same."""
    run = subprocess.run([sys.executable, os.path.join(ROOT, "predict.py"), *mixed_images[:2]], capture_output=True,
                         text=True, timeout=120, cwd=os.path.dirname(mixed_images[0]))
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert run.stdout.startswith(mixed_images[0] + ": 2 (")
    assert run.stderr.startswith(mixed_images[1] + ": no such file")


def test_a_reader_that_stops_early_gets_no_traceback(mixed_images):
    """`predict.py --json ... | head -c 100`: more output than a pipe holds, and the reader closes it."""
    reader = subprocess.Popen([sys.executable, os.path.join(ROOT, "predict.py"), "--json", *[mixed_images[0]] * 400],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert reader.stdout.read(100).startswith(b"[")
    reader.stdout.close()
    error = reader.stderr.read().decode()
    assert reader.wait(timeout=120) == 1
    assert error == ""


def test_cli_help_shows_the_usage_and_each_option(capsys):
    words = help_words(predict, capsys)
    for help_text in ["image files (PNG, JPEG, ...) showing one digit each", "print a JSON list instead of lines",
                      "its weights, a run's record or bare weights (default: the shipped s5_net.pt)"]:
        assert re.search(f"(^| ){re.escape(help_text)}( |$)", words), help_text
    assert "the network, as module:Class (default: the one the weights' record names, else model:Net)" in words


def test_cli_reads_with_the_weights_it_is_given(mixed_images, tmp_path, run_cli):
    """--checkpoint reaches the network: weights that are all zero give every digit 10%."""
    save_checkpoint(tmp_path / "zero.pt", net_with_zero_weights())
    run = run_cli("--json", "--checkpoint", str(tmp_path / "zero.pt"), mixed_images[0])
    assert json.loads(run.stdout)[0]["probabilities"] == [pytest.approx(0.1)] * 10


def test_cli_rejects_a_bad_checkpoint_clearly(mixed_images, tmp_path, run_cli):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"PK\x03\x04 not really a checkpoint")
    run = run_cli("--checkpoint", str(broken), mixed_images[0])
    assert run.returncode == 2, "bad input: exit 2, as the help says"
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines() == [run.stderr.strip()]
    assert "broken.pt is not a readable PyTorch checkpoint" in run.stderr
    foreign = tmp_path / "foreign.pt"
    torch.save(torch.nn.Linear(3, 3).state_dict(), foreign)
    run = run_cli("--checkpoint", str(foreign), mixed_images[0])
    assert run.returncode == 2, "bad input: exit 2, as the help says"
    assert "does not fit model:Net" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.quick
def test_an_image_between_pil_s_two_size_limits_is_refused_as_too_large(tmp_path):
    """PIL only warns from MAX_IMAGE_PIXELS up to twice that; such an image is refused all the same."""
    from inputs import png_header_only
    side = int((1.5 * Image.MAX_IMAGE_PIXELS) ** 0.5)
    path = tmp_path / "large.png"
    png_header_only(path, side, side)
    with pytest.raises(predict.ImageError, match="^image too large to decode safely"):
        predict.read_image(str(path))
