"""The draw-a-digit demo: its handlers on sketchpad-shaped values, the running app through gradio_client,
and the page in a real browser (Debian's chromium, driven by Playwright).

APP_SCREENSHOT=docs/app.png python -m pytest tests/test_app.py -k browser   # also saves the README's picture"""
import io
import os
import re
import shutil
import statistics
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

gr = pytest.importorskip("gradio", reason="the demo's packages are not installed: pip install -r requirements/app.txt")

import app  # noqa: E402
import predict  # noqa: E402
from s5 import explain  # noqa: E402
from s5 import pictures  # noqa: E402
from browser import CHROMIUM, STROKES  # noqa: E402
from helpers import ROOT, free_port, stop, wait_for_port  # noqa: E402
from inputs import user_image  # noqa: E402
from zoo import AssignmentNet, net_with_zero_weights, with_shifted_batch_norm  # noqa: E402

SIZE = 280  # the sketchpad's canvas


def drawn_layer(digit, ink=(0, 0, 0)):
    """An MNIST digit as a sketchpad layer: RGBA, its colour `ink`, opaque where the digit is."""
    alpha = np.asarray(Image.fromarray(digit.numpy()).resize((200, 200), Image.BILINEAR))
    layer = np.zeros((SIZE, SIZE, 4), np.uint8)
    layer[40:240, 50:250, :3] = ink
    layer[40:240, 50:250, 3] = alpha
    return layer


def composite(layer, paper):
    alpha = layer[..., 3:].astype(np.float32) / 255
    rgb = layer[..., :3] * alpha + np.array(paper, np.float32) * (1 - alpha)
    return np.dstack([rgb.round().astype(np.uint8), np.full((SIZE, SIZE), 255, np.uint8)])


def sketch_value(layer, paper):
    background = np.dstack([np.full((SIZE, SIZE, 3), paper, np.uint8), np.full((SIZE, SIZE), 255, np.uint8)])
    return {"background": background, "layers": [layer], "composite": composite(layer, paper)}


def test_the_drawing_is_read_from_the_ink_whatever_the_paper(mnist_test):
    empty = np.zeros((SIZE, SIZE, 4), np.uint8)
    assert app.read_drawing(None) == (None, None, None)
    assert app.read_drawing({"background": None, "layers": [], "composite": None}) == (None, None, None)
    assert app.read_drawing(sketch_value(empty, (255, 255, 255))) == (None, None, None)  # cleared or all erased
    for index in range(10):
        digit, expected = mnist_test.data[index], mnist_test.targets[index].item()
        layer = drawn_layer(digit)
        answers = [app.read_drawing({"background": None, "layers": [layer], "composite": None}),  # transparent
                   app.read_drawing(sketch_value(layer, (255, 255, 255))),  # on white
                   app.read_drawing(sketch_value(layer, (40, 40, 40))),  # on dark grey (dark mode)
                   app.read_drawing(sketch_value(drawn_layer(digit, ink=(255, 255, 255)), (40, 40, 40)))]
        labels = [label for label, _, _ in answers]
        assert all(label == labels[0] for label in labels)
        assert max(labels[0], key=labels[0].get) == str(expected)
        preview = answers[0][1]
        _, _, network_input = predict.read_digit(layer[..., 3])
        assert np.array_equal(preview, pictures.input_picture(network_input))  # what the network read
        assert torch.equal(answers[0][2], network_input)  # what the Inside view looks into


@pytest.fixture(scope="module")
def running_app():
    port = free_port()
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env={**os.environ, "GRADIO_SERVER_PORT": str(port)})
    url = f"http://127.0.0.1:{port}/"
    first_line = process.stdout.readline()
    wait_for_port(port, process, 120)
    yield url, first_line, process
    stop(process)


@pytest.mark.server
def test_the_app_serves_on_its_default_address_and_port():
    """No GRADIO_SERVER_NAME or GRADIO_SERVER_PORT: loopback and Gradio's 7860, as the README's table says."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 7860)) == 0:
            pytest.skip("something else listens on port 7860 here")
    env = {key: value for key, value in os.environ.items() if key not in ("GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT")}
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env)
    try:
        assert process.stdout.readline().strip() == "S5 digit demo on http://127.0.0.1:7860 (Ctrl+C stops it)"
        wait_for_port(7860, process, 120)
    finally:
        stop(process)


@pytest.mark.server
def test_the_app_prints_its_local_address(running_app):
    url, first_line, _ = running_app
    assert first_line.strip() == f"S5 digit demo on {url.rstrip('/')} (Ctrl+C stops it)"


@pytest.mark.server
def test_the_api_answers_as_predict_py_does(running_app, mnist_test, tmp_path):
    from gradio_client import Client, handle_file
    client = Client(running_app[0], verbose=False)
    rng = np.random.default_rng(0)
    picks = rng.choice(len(mnist_test), size=60, replace=False)
    right = 0
    for i, index in enumerate(picks):
        path = tmp_path / f"{i}.{'jpg' if i % 3 == 2 else 'png'}"
        user_image(mnist_test.data[index], rng, (40, 64, 100, 180)[i % 4], "L" if i % 3 == 0 else "RGB").save(path)
        label, preview = client.predict(handle_file(str(path)), api_name="/predict")
        digit, probabilities = predict.predict(str(path))
        assert label["label"] == str(digit)
        assert {c["label"]: c["confidence"] for c in label["confidences"]}[str(digit)] == \
            pytest.approx(probabilities[digit], abs=1e-6)
        right += digit == mnist_test.targets[index].item()
    print(f"the app's API read {right}/{len(picks)} user-style digits right")
    assert right == len(picks)  # docs/inside.md says 60 of 60


@pytest.mark.server
def test_the_explain_api_returns_the_inside_pictures(running_app, mnist_test, tmp_path):
    from gradio_client import Client, handle_file
    client = Client(running_app[0], verbose=False)
    path = tmp_path / "three.png"
    user_image(mnist_test.data[18], np.random.default_rng(1), 120, "L").save(path)  # test digit 18 is a 3
    *grids, field_input, attribution, caption, digit = client.predict(handle_file(str(path)), api_name="/explain")
    assert digit == str(predict.predict(str(path))[0]) == "3"
    assert "digit 3" in caption
    shapes = [np.asarray(Image.open(picture)).shape for picture in grids]
    assert shapes == [(128, 672, 3)] * 4  # eight 84-pixel maps of each convolution, their channels, the scale
    assert np.asarray(Image.open(field_input)).shape == (280, 280, 3)
    assert np.asarray(Image.open(attribution)).shape == (310, 280, 3)  # and its colour scale


def test_an_image_pasted_onto_the_sketchpad_is_read(mnist_test):
    """A pasted picture arrives as the background and the composite, with no drawn layer."""
    for index in range(5):
        pasted = np.asarray(user_image(mnist_test.data[index], np.random.default_rng(index), 120, "RGB").convert("RGBA"))
        label, _, _ = app.read_drawing({"background": pasted, "layers": [], "composite": pasted})
        assert max(label, key=label.get) == str(mnist_test.targets[index].item())


@pytest.mark.quick
def test_the_inside_view_handlers(mnist_test):
    model = predict.load_model()
    network_input = predict.read_digit(255 - mnist_test.data[0].numpy(), model)[2]  # a 7, dark on light
    *grids, field_input, attribution, caption, digit, state = app.inside_view(network_input, model)
    assert digit == "7"
    assert caption.startswith("**Attribution for the digit 7**")
    assert [grid.shape[1] for grid in grids] == [8 * pictures.TILE] * 4
    assert np.array_equal(field_input, pictures.input_picture(network_input))
    assert np.array_equal(attribution, pictures.attribution_picture(
        network_input, explain.attribution(model, network_input, [7])[0]))
    why_not_1, caption_1, picked = app.attribution_for(state, "1", model)
    assert picked == "1"
    assert why_not_1.shape == attribution.shape
    assert not np.array_equal(why_not_1, attribution)
    assert caption_1.startswith("**Attribution for the digit 1**")
    # an empty pad (cleared, erased) shows the sample 7 again, as the page says, not empty pictures
    empty, sample = app.inside_view(None, model), app.inside_view(app.sample_input(), model)
    assert all(np.array_equal(a, b) for a, b in zip(empty[:7], sample[:7]))
    assert empty[7] == sample[7] == "7"
    # clicks and picks before anything was drawn, or a pick cleared
    fields = {row["layer"]: row for row in explain.receptive_fields(model) if row["kind"] == "conv"}
    assert app.receptive_field_of(None, 3, fields, "conv4", (5, 5)) == (None,) * 5 + ("",)
    assert app.attribution_for(None, "3", model) == (None, "", "3")
    assert app.attribution_for(state, None, model) == (None, "", None)


@pytest.mark.quick
@pytest.mark.parametrize("index, layer, size", [(0, "conv1", 26), (1, "conv2", 24), (2, "conv3", 10), (3, "conv4", 8)])
def test_a_click_on_each_grid_outlines_its_unit_and_receptive_field(mnist_test, index, layer, size):
    model = predict.load_model()
    network_input = predict.read_digit(255 - mnist_test.data[0].numpy(), model)[2]
    state = app.inside_view(network_input, model)[-1]
    fields = {row["layer"]: row for row in explain.receptive_fields(model)}
    row, col = size // 2, size // 3
    click = (2 * pictures.TILE + (col + 0.5) * pictures.TILE / size, (row + 0.5) * pictures.TILE / size)
    *grids, picture, sentence = app.receptive_field_of(state, index, fields, layer, click)
    box = explain.receptive_field_box(fields[layer], row, col)
    assert np.array_equal(picture, pictures.input_picture(network_input, box))
    grid, channels = pictures.feature_map_grid(state["maps"][index], unit=(2, row, col))
    assert np.array_equal(grids[index], grid)  # the unit marked on the map clicked, the others plain
    assert all(np.array_equal(grids[i], pictures.feature_map_grid(state["maps"][i])[0]) for i in range(4) if i != index)
    top, left, bottom, right = box
    assert sentence == (f"The red box: the {bottom - top + 1}x{right - left + 1} input pixels (rows {top}-{bottom}, "
                        f"columns {left}-{right}) that {layer}'s channel {channels[2]}, unit (row {row}, column {col}) "
                        "reads.")
    *grids, picture, sentence = app.receptive_field_of(state, index, fields, layer, (5, pictures.TILE + 5))  # a label
    assert np.array_equal(picture, pictures.input_picture(network_input))
    assert sentence == ""


def test_the_inside_view_shows_each_convolution_as_the_next_layer_reads_it(mnist_test):
    """After its batch norm, not straight out of the convolution: a network whose batch norm shifts every channel
    shows other pictures before and after it."""
    model = with_shifted_batch_norm(AssignmentNet())
    network_input = predict.read_digit(255 - mnist_test.data[0].numpy(), model)[2]
    grids = app.inside_view(network_input, model)[:len(app.convolutions(model))]
    with torch.no_grad():
        read, raw = (explain.activations(model, network_input, as_read=as_read) for as_read in (True, False))
    for layer, grid in zip(app.convolutions(model), grids):
        assert np.array_equal(grid, pictures.feature_map_grid(read[layer][0])[0]), f"{layer}: not the maps as read"
        if layer.startswith("features"):  # each block's convolution; the last one, classify, has no batch norm
            assert not np.array_equal(grid, pictures.feature_map_grid(raw[layer][0])[0]), f"{layer}: before its batch norm"


def test_a_click_finds_its_unit_on_maps_that_are_not_square(mnist_test):
    """A 3x5 kernel leaves 26x24 maps: the click's row is read on 26 rows, its column on 24 columns."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, (3, 5)), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 10)).eval()
    network_input = predict.read_digit(255 - mnist_test.data[0].numpy(), model)[2]
    state = app.inside_view(network_input, model)[-1]
    fields = {row["layer"]: row for row in explain.receptive_fields(model)}
    row, col = 20, 20
    click = ((col + 0.5) * pictures.TILE / 24, (row + 0.5) * pictures.TILE / 26)
    sentence = app.receptive_field_of(state, 0, fields, "0", click)[-1]
    assert "unit (row 20, column 20)" in sentence, sentence


@pytest.mark.quick
def test_the_sample_shown_before_anything_is_drawn_is_a_7():
    model = predict.load_model()
    assert app.inside_view(app.sample_input(), model)[-2] == "7"


def test_the_handlers_answer_with_the_weights_they_are_given(mnist_test, mixed_images):
    """`app.py --checkpoint` and `predict.py --checkpoint` hand their weights down: here a network whose weights
    are all zero, which gives every digit 0.1 where the shipped weights are sure of the answer."""
    zero = net_with_zero_weights()
    uniform = {str(d): pytest.approx(0.1) for d in range(10)}
    assert predict.predict(mixed_images[0], zero)[1] == [pytest.approx(0.1)] * 10
    assert app.read_file(mixed_images[0], zero)[0] == uniform
    assert app.read_drawing({"background": None, "layers": [drawn_layer(mnist_test.data[0])]}, zero)[0] == uniform


@pytest.mark.server
def test_bad_files_get_predict_py_s_sentence_and_the_app_keeps_serving(running_app, mixed_images):
    from gradio_client import Client, handle_file
    client = Client(running_app[0], verbose=False)
    good, _, not_image, truncated, blank, bomb = mixed_images
    for path, expected in [(not_image, "not an image that PIL can read"), (truncated, "truncated or damaged"),
                           (blank, "blank image"), (bomb, "too large to decode safely")]:
        with pytest.raises(Exception, match=re.escape(f"{os.path.basename(path)}: ")) as error:
            client.predict(handle_file(path), api_name="/predict")
        assert expected in str(error.value)
        assert "Traceback" not in str(error.value)
    label, _ = client.predict(handle_file(good), api_name="/predict")
    assert label["label"] == "2"


@pytest.mark.quick
def test_the_file_handlers_read_as_predict_py_does_and_name_a_bad_file(mixed_images):
    model = predict.load_model()
    good, _, not_image, *_ = mixed_images
    label, preview = app.read_file(good, model)
    _, probabilities, network_input = predict.read_digit(good, model)
    assert label == {str(d): p for d, p in enumerate(probabilities)}
    assert np.array_equal(preview, pictures.input_picture(network_input))
    *grids, field_input, attribution, caption, digit, state = app.inside_of_file(good, model)
    assert digit == "2"
    assert torch.equal(state["input"], network_input)
    assert app.read_file(None, model) == (None, None)
    no_file, sample = app.inside_of_file(None, model), app.inside_view(None, model)  # the sample 7, as on an empty pad
    assert all(np.array_equal(a, b) for a, b in zip(no_file[:7], sample[:7]))
    for handler in (app.read_file, app.inside_of_file):
        with pytest.raises(gr.Error) as error:
            handler(not_image, model)
        assert error.value.message == "notes.txt: not an image that PIL can read (use PNG, JPEG, BMP, GIF or TIFF)"
        assert error.value.print_exception is False, \
            f"{handler.__name__}: a bad upload is the user's mistake, yet the server's console gets its traceback"


# --- the page in a real browser -------------------------------------------------------------------------

def canvas_box(page):
    boxes = [c.bounding_box() for c in page.query_selector_all("#sketch canvas")]
    return max(boxes, key=lambda b: b["width"] * b["height"])


def stroke(page, points):
    """One pointer stroke through `points`; returns the time its pointer went up."""
    box = canvas_box(page)
    # the 280x280 canvas is drawn centred in the sketchpad's box
    side = min(box["width"], box["height"])
    left, top = box["x"] + (box["width"] - side) / 2, box["y"] + (box["height"] - side) / 2
    xy = [(left + x * side, top + y * side) for x, y in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for x, y in xy[1:]:
        page.mouse.move(x, y, steps=2)  # each move redraws the canvas, slowly in a software renderer
    page.mouse.up()
    return time.perf_counter()


def shown_digit(page):
    """The top answer the page shows, or None when the label is empty."""
    lines = page.inner_text("#sketch-label").split("\n")
    return lines[1] if len(lines) > 1 and re.fullmatch(r"\d", lines[1]) else None


def wait_for(page, condition, timeout=240):  # for the state itself: a busy 2-core machine renders in software
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"the page did not get there in {timeout} s: it shows {page.inner_text('#sketch-label')!r}")


def draw(page, digit):
    """Draws `digit`; returns the seconds from the end of its last stroke to the label showing it."""
    for points in STROKES[digit][:-1]:
        stroke(page, points)
    before = page.inner_text("#sketch-label")
    ended = stroke(page, STROKES[digit][-1])
    wait_for(page, lambda: shown_digit(page) == digit and page.inner_text("#sketch-label") != before)
    page.last_stroke_end = ended
    return time.perf_counter() - ended


def picture(page, selector):
    """The picture a gr.Image shows, as an array, or None while it shows none."""
    image = page.query_selector(f"{selector} img")
    if image is None or not image.get_attribute("src"):
        return None
    return np.asarray(Image.open(io.BytesIO(page.request.get(image.get_attribute("src")).body())).convert("RGB"))


def inside_shown(page, before=None):
    """Waits for the whole Inside view of the last drawing: its conv1 maps unlike `before`, and its input the
    picture the network read (a drawing's earlier strokes have Inside views of their own, which may still be on
    their way); returns the seconds since the last stroke ended."""
    def shown():
        now = picture(page, "#inside-input")
        return (changed(page, "#inside-1", before) and now is not None
                and np.array_equal(now, picture(page, "#sketch-preview"))
                and all(picture(page, f"#inside-{index}") is not None for index in range(1, 5))
                and picture(page, "#inside-attribution") is not None)
    wait_for(page, shown)
    return time.perf_counter() - page.last_stroke_end


def changed(page, selector, before):
    """Whether the picture differs from `before` (not merely missing while the page swaps it)."""
    now = picture(page, selector)
    return now is not None and not np.array_equal(now, before)


def red_box(page, selector):
    """(top, left, bottom, right) of the red outline a picture shows, or None while it shows none (waiting for
    the outline itself: the picture may change to the plain input on its way there)."""
    now = picture(page, selector)
    if now is None:
        return None
    rows, cols = (np.abs(now.astype(int) - [230, 30, 30]).sum(axis=2) < 30).nonzero()
    return (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1) if len(rows) else None


def click_unit(page, selector, tile_index, row, col, size):
    """Clicks unit (row, col) of the `tile_index`-th map in a feature map grid that the page shows scaled."""
    image = page.query_selector(f"{selector} img")
    image.scroll_into_view_if_needed()  # a click lands only inside the viewport
    box = image.bounding_box()
    scale = box["width"] / image.evaluate("img => img.naturalWidth")
    tile = pictures.TILE
    x, y = tile_index * tile + (col + 0.5) * tile / size, (row + 0.5) * tile / size
    page.mouse.click(box["x"] + x * scale, box["y"] + y * scale)


def clear(page):
    page.click('#sketch button[aria-label="Clear canvas"]')
    wait_for(page, lambda: shown_digit(page) is None)


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing: apt-get install chromium")
@pytest.mark.server
@pytest.mark.timeout(1800)  # a dozen waits for states, each as long as a busy machine needs
def test_drawing_in_a_browser(running_app, mnist_test, tmp_path):
    from playwright.sync_api import sync_playwright
    url = running_app[0]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 760})
        outside = []
        page.on("request", lambda r: r.url.startswith(("http://127.0.0.1", "data:", "blob:")) or outside.append(r.url))
        page.goto(url)
        page.wait_for_selector("#sketch canvas")
        page.wait_for_selector('#sketch button[aria-label="Brush"]')
        # before anything is drawn, the Inside view shows a sample 7, not empty boxes
        wait_for(page, lambda: picture(page, "#inside-1") is not None)
        sample = picture(page, "#inside-1")
        assert "digit 7" in page.inner_text("#inside-caption")
        assert picture(page, "#inside-attribution") is not None
        latencies = [draw(page, "7")]  # the very first strokes after the page loads
        # the Inside view follows the label: four layers' maps, the input and the attribution for the answer
        inside = [inside_shown(page, sample)]
        assert page.is_checked('#inside-digit input[value="7"]')
        why_7 = picture(page, "#inside-attribution")
        page.click('#inside-digit label:has-text("1")')  # why not a 1?
        # the picture and the caption arrive one after the other: wait for both, as for any state of the page
        wait_for(page, lambda: changed(page, "#inside-attribution", why_7)
                 and "digit 1" in page.inner_text("#inside-caption"))
        assert page.is_checked('#inside-digit input[value="1"]')
        click_unit(page, "#inside-4", 0, 3, 5, 8)
        assert wait_for(page, lambda: red_box(page, "#inside-input")) == (60, 100, 200, 240)  # 14x14
        assert "14x14 input pixels (rows 6-19, columns 10-23) that conv4's channel" in page.inner_text("#inside-field")
        assert red_box(page, "#inside-4") is not None  # the unit marked on its map
        assert page.is_checked('#inside-digit input[value="1"]')
        assert "digit 1" in page.inner_text("#inside-caption")
        page.query_selector("#inside").screenshot(path=str(tmp_path / "app-inside.png"))
        if os.environ.get("APP_SCREENSHOT"):  # the README's picture of the Inside view, beside the demo's
            shutil.copy(tmp_path / "app-inside.png", os.path.join(os.path.dirname(os.environ["APP_SCREENSHOT"]) or ".",
                                                                 "app-inside.png"))
        clear(page)
        latencies.append(draw(page, "1"))
        inside.append(inside_shown(page))
        clear(page)
        latencies.append(draw(page, "0"))
        inside.append(inside_shown(page))
        # undo: a stray stroke over the 0, then undo, gives the 0 back
        stroke(page, [(0.1, 0.9), (0.9, 0.9)])
        wait_for(page, lambda: page.query_selector("#sketch-label") and shown_digit(page) is not None)
        page.click('#sketch button[aria-label="Undo"]')
        wait_for(page, lambda: shown_digit(page) == "0")
        page.screenshot(path=str(tmp_path / "app.png"))
        if os.environ.get("APP_SCREENSHOT"):
            shutil.copy(tmp_path / "app.png", os.path.join(ROOT, os.environ["APP_SCREENSHOT"]))
        # the eraser: rubbing a gap into the 1 changes what the network reads, and its answer
        clear(page)
        latencies.append(draw(page, "1"))
        before = page.inner_text("#sketch-label")
        page.click('#sketch button[aria-label="Erase"]')
        stroke(page, [(0.3, 0.5), (0.7, 0.5)])
        wait_for(page, lambda: page.inner_text("#sketch-label") != before)
        # the Upload tab: a file chosen in the page is read like the drawing, and looked inside
        page.click('button[role="tab"]:has-text("Upload")')
        digit_file = tmp_path / "upload.png"
        user_image(mnist_test.data[1], np.random.default_rng(5), 100, "L").save(digit_file)  # test digit 1 is a 2
        page.set_input_files("#upload input[type=file]", str(digit_file))
        wait_for(page, lambda: re.search(r"\n2\n", page.inner_text("#upload-label")))
        browser.close()
    print(f"stroke end to label: median {1000 * statistics.median(latencies):.0f} ms over {len(latencies)} digits; "
          f"to the whole Inside view: median {1000 * statistics.median(inside):.0f} ms over {len(inside)} digits")
    assert outside == []  # nothing loaded from outside 127.0.0.1


@pytest.mark.server
def test_the_app_listens_on_loopback_only_and_connects_nowhere(running_app):
    """After the tests above used it: the server's own sockets, not only what a page requested."""
    psutil = pytest.importorskip("psutil")
    url, first_line, _ = running_app
    assert "gradio.live" not in first_line
    assert "share" not in first_line.lower()  # no share link
    server = psutil.Process(running_app[2].pid)
    sockets = server.net_connections(kind="inet")
    listening = [c.laddr for c in sockets if c.status == psutil.CONN_LISTEN]
    assert listening, listening
    assert all(address.ip == "127.0.0.1" for address in listening), listening
    remote = {c.raddr.ip for c in sockets if c.raddr}
    assert remote <= {"127.0.0.1"}, remote  # no analytics, no telemetry, no fonts from elsewhere


@pytest.mark.quick
def test_a_port_that_is_no_number_is_refused_in_one_sentence_with_exit_2(monkeypatch, capsys):
    monkeypatch.setenv("GRADIO_SERVER_PORT", "http")
    monkeypatch.setattr(app, "make_demo", lambda model: None)  # the page is not what this checks
    assert app.main([]) == 2, "bad input: exit 2, as the help says"
    assert capsys.readouterr().err.strip() == ("app.py: GRADIO_SERVER_PORT='http' is not a port number: set it to "
                                               "one, such as 7860, or unset it")
