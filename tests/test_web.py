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
from helpers import CHROMIUM, ROOT, STROKES, free_port, user_image, wait_for_port
from data import MNIST_MEAN, MNIST_STD

pytest.importorskip("playwright", reason="Playwright is not installed: pip install -r requirements-dev.txt")
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
                           timeout=120_000)
    return page


def status(page):
    return page.inner_text("#status")


@pytest.mark.quick
def test_the_page_loads_from_its_own_folder_only(browser, serve):
    requests = []
    page = open_page(browser, serve(), requests)
    assert status(page) == READY
    assert requests and all(url.startswith("http://127.0.0.1:") for url, _ in requests)
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
        expected = predict.preprocess(image)[0, 0] * MNIST_STD + MNIST_MEAN
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
    page.wait_for_function(f"document.getElementById('answer').textContent === '{digit}'", timeout=60_000)
    return time.perf_counter() - ended


def test_strokes_drawn_with_the_mouse_are_read(browser, serve, tmp_path):
    page = open_page(browser, serve())
    latencies = [draw(page, digit) for _ in range(7) for digit in STROKES][:20]
    rows = page.query_selector_all("#probabilities tr")
    shown = [float(row.inner_text().split()[-1].rstrip("%")) for row in rows]
    assert len(shown) == 10 and abs(sum(shown) - 100) < 1 and max(shown) == shown[int(page.inner_text("#answer"))]
    picture = np.asarray(Image.open(io.BytesIO(page.query_selector("#input").screenshot())).convert("L"))
    assert picture.max() > 200 and picture.min() < 30  # the 28x28 picture shows white ink on black
    page.screenshot(path=str(tmp_path / "web.png"))
    if os.environ.get("WEB_SCREENSHOT"):
        shutil.copy(tmp_path / "web.png", os.path.join(ROOT, os.environ["WEB_SCREENSHOT"]))
    page.click("#clear")
    assert page.inner_text("#answer") == "" and status(page) == READY
    print(f"last stroke to answer: median {1000 * statistics.median(latencies):.0f} ms over {len(latencies)} drawings")
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
