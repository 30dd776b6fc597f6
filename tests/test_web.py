"""The page that runs the network with no server (web/): served by `python -m http.server` on 127.0.0.1, driven
in Debian's chromium by Playwright. Its reading of a drawing is compared with predict.py's, pixel by pixel."""
import base64
import io
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw

import predict
from browser import CHROMIUM, STROKES
from helpers import ROOT, free_port, wait_for_port
from inputs import user_image
from zoo import ResidualNet

pytest.importorskip("playwright", reason="Playwright is not installed: pip install -r requirements/dev.txt")
WEB = os.path.join(ROOT, "web")
pytestmark = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing: apt-get install chromium"),
    pytest.mark.skipif(not os.path.isdir(os.path.join(WEB, "node_modules", "onnxruntime-web")),
                       reason="ONNX Runtime Web is not installed: cd web && npm ci"),
]
READY = "Draw one digit on the pad."


@pytest.fixture
def serve():
    """Starts a plain static file server for a folder; returns its URL. Stopped after the test."""
    servers = []

    def start(folder=WEB):
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                                  cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers.append(server)
        wait_for_port(port, server, 90)
        return f"http://127.0.0.1:{port}/"

    yield start
    for server in servers:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def open_page(browser, url, requests=None):
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    if requests is not None:
        page.on("requestfinished", lambda r: requests.append((r.url, r.sizes()["responseBodySize"])))
    page.goto(url)
    # a busy 2-core machine compiles the 14 MB WebAssembly runtime slowly
    page.wait_for_function("document.getElementById('status').textContent !== 'Loading the network...'",
                           timeout=240_000)
    return page


def status(page):
    return page.inner_text("#status")


@pytest.mark.quick
def test_the_page_loads_from_its_own_folder_only(browser, serve):
    requests = []
    page = open_page(browser, serve(), requests)
    assert status(page) == READY
    assert requests
    assert all(url.startswith("http://127.0.0.1:") for url, _ in requests)
    total = sum(size for _, size in requests)
    print(f"the page's download: {total:,} bytes in {len(requests)} files: "
          + ", ".join(f"{url.rsplit('/', 1)[1]} {size:,}" for url, size in requests))
    assert any(url.endswith("s5_net.onnx") for url, _ in requests)
    page.close()


def png_data_url(image):
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


READ_IMAGE = """async (url) => {
  const image = new Image();
  image.src = url;
  await image.decode();
  const canvas = document.createElement("canvas");
  [canvas.width, canvas.height] = [image.width, image.height];
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const { preprocess } = await import("./preprocess.js");
  const pixels = context.getImageData(0, 0, image.width, image.height);
  const { picture } = preprocess(pixels);
  const { digit } = await window.s5.read(pixels);
  return { picture: Array.from(picture), digit };
}"""


def digit_images(mnist_test):
    """Digits as users hand them in: MNIST test digits re-drawn dark on light paper at several sizes, light on
    dark, in grey and colour, and thin strokes drawn with PIL, tall and wide. None is exactly symmetric: there
    the centre of mass lies on a half pixel, and PyTorch's float32 sums and the page's float64 ones may round
    it to neighbouring pixels."""
    rng = np.random.default_rng(11)
    images = [user_image(mnist_test.data[i], rng, size, mode)
              for i, (size, mode) in enumerate([(40, "L"), (64, "RGB"), (90, "L"), (120, "RGB"), (150, "L"),
                                                (180, "RGB"), (56, "L"), (200, "RGB")])]
    images.append(Image.fromarray(mnist_test.data[8].numpy()).resize((112, 112), Image.BILINEAR))  # white on black
    for size, points in [((60, 200), [(30, 20), (30, 180)]), ((220, 90), [(20, 70), (120, 15), (200, 60)])]:
        image = Image.new("RGB", size, (250, 248, 240))
        ImageDraw.Draw(image).line(points, fill=(20, 30, 90), width=7)
        images.append(image)
    return images


def test_the_page_reads_images_as_predict_py_does(browser, serve, mnist_test):
    page = open_page(browser, serve())
    model = predict.load_model()
    for index, image in enumerate(digit_images(mnist_test)):
        result = page.evaluate(READ_IMAGE, png_data_url(image))
        expected = predict.preprocess(image)[0, 0] * 0.3081 + 0.1307  # MNIST's deviation and mean
        picture = np.array(result["picture"], dtype=np.float64).reshape(28, 28)
        difference = np.abs(picture - expected.double().numpy() * 255).max()
        assert difference <= 1.0, f"image {index}: {difference:.2f} grey levels apart"
        assert result["digit"] == predict.predict(image, model)[0], f"image {index}"
    page.close()


def stroke(page, points):
    """One mouse stroke through `points`, fractions of the pad; returns the time the button went up."""
    box = page.query_selector("#pad").bounding_box()
    xy = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for x, y in xy[1:]:
        page.mouse.move(x, y, steps=4)
    page.mouse.up()
    return time.perf_counter()


def draw(page, digit):
    """Draws `digit` on a cleared pad; returns the seconds from its last stroke's end to the answer."""
    page.click("#clear")
    page.wait_for_function("document.getElementById('answer').textContent === ''")
    for points in STROKES[digit][:-1]:
        stroke(page, points)
    ended = stroke(page, STROKES[digit][-1])
    page.wait_for_function(f"document.getElementById('answer').textContent === '{digit}'", timeout=240_000)
    return time.perf_counter() - ended


def test_strokes_drawn_with_the_mouse_are_read(browser, serve, tmp_path):
    page = open_page(browser, serve())
    latencies = [draw(page, digit) for _ in range(7) for digit in STROKES][:20]
    rows = page.query_selector_all("#probabilities tr")
    shown = [float(row.inner_text().split()[-1].rstrip("%")) for row in rows]
    assert len(shown) == 10
    assert abs(sum(shown) - 100) < 1
    assert max(shown) == shown[int(page.inner_text("#answer"))]
    picture = np.asarray(Image.open(io.BytesIO(page.query_selector("#input").screenshot())).convert("L"))
    assert picture.max() > 200
    assert picture.min() < 30  # the 28x28 picture shows white ink on black
    page.screenshot(path=str(tmp_path / "web.png"))
    if os.environ.get("WEB_SCREENSHOT"):
        shutil.copy(tmp_path / "web.png", os.path.join(ROOT, os.environ["WEB_SCREENSHOT"]))
    page.click("#clear")
    assert page.inner_text("#answer") == ""
    assert status(page) == READY
    print(f"last stroke to answer: median {1000 * statistics.median(latencies):.0f} ms over {len(latencies)} drawings")
    page.close()


PAD_AND_PICTURE = """() => {
  const pad = document.getElementById("pad");
  const shown = document.getElementById("input").getContext("2d").getImageData(0, 0, 28, 28).data;
  return { png: pad.toDataURL("image/png"), picture: Array.from(shown.filter((_, i) => i % 4 === 0)) };
}"""


def drawn_pad(page, strokes):
    """Draws `strokes` on a cleared pad and waits for the answer; returns (the pad as a PIL image, the 28x28
    picture the page shows, its answer)."""
    page.click("#clear")
    for points in strokes:
        stroke(page, points)
    page.wait_for_function("document.getElementById('answer').textContent !== ''", timeout=240_000)
    shown = page.evaluate(PAD_AND_PICTURE)
    pad = Image.open(io.BytesIO(base64.b64decode(shown["png"].split(",", 1)[1]))).convert("RGB")
    return pad, np.array(shown["picture"], dtype=np.float64).reshape(28, 28), page.inner_text("#answer")


def assert_read_as_predict_py_reads(pad, picture, answer, model):
    expected = (predict.preprocess(pad)[0, 0] * 0.3081 + 0.1307).double().numpy() * 255
    assert np.abs(picture - expected).max() <= 1.0
    assert answer == str(predict.predict(pad, model)[0])


def test_a_digit_touching_the_pads_edges_is_read_as_predict_py_reads_it(browser, serve):
    page = open_page(browser, serve())
    # a 1 from the top edge to the bottom one, its foot out to the left edge (the brush's round end reaches it)
    pad, picture, answer = drawn_pad(page, [[(0.55, 0.01), (0.55, 0.99)], [(0.01, 0.97), (0.55, 0.97)]])
    ink = np.asarray(pad.convert("L")) < 128
    assert ink[0].any()
    assert ink[-1].any()
    assert ink[:, 0].any()  # the ink does reach three edges
    assert_read_as_predict_py_reads(pad, picture, answer, predict.load_model())
    page.close()


def test_a_stroke_that_leaves_the_pad_and_comes_back_goes_on_and_is_read_when_released_outside(browser, serve):
    page = open_page(browser, serve())
    box = page.query_selector("#pad").bounding_box()
    assert box["x"] > 0.05 * box["width"]  # the pointer leaves the pad, not the window
    # a 7 whose bar runs out past the left edge and back in, then its stem, out past the bottom edge where the
    # button goes up: one stroke
    seven = [(0.3, 0.22), (-0.05, 0.22), (-0.05, 0.3), (0.75, 0.3), (0.45, 0.85), (0.42, 1.06)]
    pad, picture, answer = drawn_pad(page, [seven])
    ink = np.asarray(pad.convert("L")) < 128
    assert ink[int(0.3 * 280), :20].any()  # where the stroke came back in
    assert ink[int(0.6 * 280), int(0.59 * 280) - 15:int(0.59 * 280) + 15].any()  # its stem, drawn after the return
    assert_read_as_predict_py_reads(pad, picture, answer, predict.load_model())
    assert answer == "7"
    page.close()


def test_a_missing_model_file_is_said_in_one_sentence(browser, serve, tmp_path):
    folder = tmp_path / "web"
    folder.mkdir()
    for name in ("index.html", "digit.js", "preprocess.js"):
        shutil.copy(os.path.join(WEB, name), folder / name)
    os.symlink(os.path.join(WEB, "node_modules"), folder / "node_modules")
    page = open_page(browser, serve(str(folder)))
    assert status(page) == ("The network's file s5_net.onnx is missing from this folder (HTTP 404): write it with "
                            "`python export.py --output web/s5_net.onnx`, then reload the page.")
    page.close()


def test_a_browser_without_webassembly_is_told_so(browser, serve):
    page = browser.new_page()
    page.add_init_script("delete globalThis.WebAssembly")  # as in a browser with WebAssembly switched off
    page.goto(serve())
    page.wait_for_function("document.getElementById('status').textContent !== 'Loading the network...'")
    assert status(page) == ("This browser cannot run WebAssembly, which the network needs here: open the page in a "
                            "current Chrome, Edge, Firefox or Safari, or with WebAssembly switched on.")
    page.close()


def test_the_page_opened_as_a_file_says_how_to_serve_it_and_stops(browser, tmp_path):
    page = browser.new_page()
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto("file://" + os.path.join(WEB, "index.html"))
    page.wait_for_function("document.getElementById('status').textContent !== 'Loading the network...'")
    assert status(page) == ("This page was opened as a file, and browsers do not let a file's page load the "
                            "network: serve its folder, e.g. `python -m http.server --directory web`, and open "
                            "http://localhost:8000/.")
    assert "off" in page.get_attribute("#pad", "class")  # nothing to draw for
    assert not [url for url in requests if url.endswith((".onnx", ".mjs", ".wasm"))]  # it stopped there
    page.screenshot(path=str(tmp_path / "file.png"))
    page.close()


@pytest.fixture(scope="module")
def own_onnx(tmp_path_factory):
    """A network of another kind than Net (residual adds, global average pooling, plain scores), exported."""
    pytest.importorskip("onnxscript", reason="the export's packages are not installed: pip install -r "
                                             "requirements/export.txt")
    import export
    import torch
    torch.manual_seed(3)
    model = ResidualNet().eval()
    path = tmp_path_factory.mktemp("own") / "residual.onnx"
    export.export_onnx(model, str(path))
    return path, model


def touch_stroke(page, points):
    """One finger stroke through `points`, fractions of the pad, as a phone's touch events."""
    box = page.query_selector("#pad").bounding_box()
    xy = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in points]
    cdp = page.context.new_cdp_session(page)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": xy[0][0], "y": xy[0][1]}]})
    for (x0, y0), (x1, y1) in zip(xy, xy[1:]):
        for t in np.linspace(0.25, 1, 4):
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [
                {"x": x0 + t * (x1 - x0), "y": y0 + t * (y1 - y0)}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def test_a_visitors_own_network_is_dropped_on_the_page_and_reads_a_touch_drawn_digit(browser, serve, own_onnx,
                                                                                      tmp_path):
    path, model = own_onnx
    context = browser.new_context(viewport={"width": 500, "height": 900}, has_touch=True, is_mobile=True)
    page = context.new_page()
    page.goto(serve())
    page.wait_for_function(f"document.getElementById('status').textContent === '{READY}'", timeout=240_000)
    data = base64.b64encode(path.read_bytes()).decode()
    page.evaluate("""async ([name, data]) => {
      const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
      const transfer = new DataTransfer();
      transfer.items.add(new File([bytes], name));
      document.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }""", [path.name, data])
    page.wait_for_function("document.getElementById('status').textContent.startsWith('residual.onnx is the network')",
                           timeout=240_000)
    assert page.inner_text("#network") == "residual.onnx"
    for points in STROKES["7"]:
        touch_stroke(page, points)
    page.wait_for_function("document.getElementById('answer').textContent !== ''", timeout=240_000)
    picture = np.asarray(Image.open(io.BytesIO(page.query_selector("#input").screenshot())).convert("L"))
    assert picture.max() > 200  # the finger's strokes reached the pad
    pad = page.evaluate("Array.from(document.getElementById('pad').getContext('2d').getImageData(0, 0, 280, 280).data)")
    drawn = Image.fromarray(np.array(pad, dtype=np.uint8).reshape(280, 280, 4)[..., :3])
    import torch
    with torch.no_grad():
        expected = int(model(predict.preprocess(drawn)).argmax())  # what PyTorch makes of the same drawing
    assert page.inner_text("#answer") == str(expected)
    page.screenshot(path=str(tmp_path / "own.png"))
    if os.environ.get("WEB_SCREENSHOT"):
        shutil.copy(tmp_path / "own.png", os.path.join(ROOT, "docs", "web-own.png"))
    context.close()


def test_a_file_that_is_not_a_digit_classifier_is_refused_in_one_sentence(browser, serve, tmp_path):
    page = open_page(browser, serve())
    (tmp_path / "notes.onnx").write_text("not a network")
    page.set_input_files("#own", str(tmp_path / "notes.onnx"))
    page.wait_for_function("!document.getElementById('status').textContent.startsWith('Loading')")
    assert status(page) == "notes.onnx is not an ONNX file the page can run: write one with python export.py."
    pytest.importorskip("onnxscript")
    import export
    import torch
    wide = tmp_path / "twelve.onnx"
    export.export_onnx(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 12)), str(wide))
    page.set_input_files("#own", str(wide))
    page.wait_for_function("!document.getElementById('status').textContent.startsWith('Loading')")
    assert status(page) == ("twelve.onnx gives 12 scores for a digit, not 10: it is not a digit classifier that the "
                            "page can use.")
    assert page.inner_text("#network") == "s5_net.onnx"  # the page kept its network
    assert page.evaluate("window.s5.read(new ImageData(28, 28)).then(() => 'read', (e) => e.constructor.name)") \
        == "BlankImage"
    page.close()
