"""What the tests share that is not a fixture: where the repository and MNIST are, the browser, free ports,
digit strokes for the browser tests, digit images as users hand them in, and what a notebook run printed."""
import hashlib
import os
import re
import shutil
import socket
import struct
import subprocess
import time
import zlib

import numpy as np
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from data import default_data_dir  # noqa: E402
from small import SeparableNet  # noqa: E402

DATA_DIR = os.path.abspath(default_data_dir())
CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright's own browser download fails here


STROKES = {  # digits as pointer strokes, in fractions of a drawing pad, for the browser tests
    "1": [[(0.5, 0.15), (0.5, 0.85)]],
    "7": [[(0.25, 0.2), (0.75, 0.2)], [(0.75, 0.2), (0.4, 0.85)]],
    "0": [[(0.5 + 0.22 * np.sin(t), 0.5 - 0.33 * np.cos(t)) for t in np.linspace(0, 2 * np.pi, 13)]],
}


def user_image(digit, rng, size, mode):
    """An MNIST digit re-drawn as a user would hand it in: dark ink on light paper, larger, off-centre."""
    ink = Image.fromarray(255 - digit.numpy()).resize((size, size), Image.BILINEAR)
    canvas = Image.new("L", (int(size * 1.8), int(size * 1.5)), 255)
    canvas.paste(ink, (int(rng.integers(0, canvas.width - size)), int(rng.integers(0, canvas.height - size))))
    return canvas.convert("RGB") if mode != "L" else canvas


def net_with_zero_weights():
    """A Net whose every weight and bias is zero: it gives each digit a probability of 0.1."""
    from model import Net
    net = Net().eval()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.zero_()
    return net


def png_header_only(path, width, height):
    """A tiny PNG file that claims a huge size: decoding it would need width x height pixels."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def tracked_files():
    """The repository's tracked files, or None outside a git checkout."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        return None
    return [name for name in listed.stdout.split("\0") if name and os.path.isfile(os.path.join(ROOT, name))]


def copy_of_repository(dest):
    """Copies the tracked files into `dest`, as a fresh clone holds them; returns their names (None: no git)."""
    names = tracked_files()
    for name in names or []:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.join(ROOT, name), dest / name)
    return names


def help_words(module, capsys):
    """A command's --help, as one line of words (argparse wraps it to the terminal's width), after checking that
    it exits 0 and shows the module's docstring, its examples, line for line as written."""
    try:
        module.main(["--help"])
    except SystemExit as exit_:
        assert exit_.code == 0
    else:
        raise AssertionError("--help did not exit")
    shown = capsys.readouterr().out
    assert module.__doc__ in shown
    return " ".join(shown.split())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, process, seconds):
    """Waits until something listens on 127.0.0.1:port, failing at once with the output of `process` if it stops
    first, and after `seconds` otherwise: long enough for a busy 2-core machine."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            assert process.poll() is None, process.stdout.read() if process.stdout else "the server stopped"
            time.sleep(0.3)
    raise AssertionError(f"nothing listened on port {port} within {seconds} s")


# What a notebook run printed (S5.ipynb through papermill: the notebook tests and the quick look)
FINAL = re.compile(r"(\d+) epochs in \d+ s; final test accuracy (\d+\.\d+)%")
BAR = re.compile(r"^Train: Loss=\d+\.\d{4} Batch_id=\d+ Accuracy=\d+\.\d\d: 100%\|.*\|", re.M)


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def outputs_text(notebook):
    return "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []))


def outputs_of(notebook, stream):
    return [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("name") == stream]


def check_executed(executed, fast, epochs):
    """What every headless run must show: its settings, the table, the epochs, the pictures, and one final
    progress line per epoch, with no carriage-return updates."""
    text = outputs_text(executed)
    assert f"fast path: {fast}" in text and f"Epoch {epochs}" in text and "Total params: 593,200" in text
    assert text.count("Adjusting learning rate of group 0 to 1.0000e-02.") == epochs + 1
    images = [o for c in executed.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 6  # samples; losses; mistakes; confusion matrix; feature maps; attributions of the mistakes
    assert "conv4  conv           256x8x8            14x14    2x2   295,168" in text  # the receptive-field table
    # the next assignment's budget, checked at the end: Net's 593,200 parameters are far over it
    assert "parameters       falls short  593,200 (budget: fewer than 8,000)" in text
    assert "99.4% or more in each of the last 3 epochs of every seed" in text
    progress = "".join(o["text"] for o in outputs_of(executed, "stderr"))
    assert "\r" not in progress
    assert len(BAR.findall(progress)) == epochs and progress.count("100%|") == epochs
    return FINAL.search(text).groups()


# Digit classifiers of other kinds than Net, for every tool that reads a network. Each takes (N, 1, 28, 28) and
# gives (N, 10) scores; the test modules name them as helpers:ClassName.
class AssignmentNet(torch.nn.Module):
    """The next assignments' kind: batch norm, dropout, padding, a 1x1 convolution, global average pooling."""

    def __init__(self):
        super().__init__()
        nn = torch.nn

        def block(cin, cout, kernel=3, padding=0):
            return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=padding, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU(), nn.Dropout(0.05))
        self.features = nn.Sequential(block(1, 8, padding=1), block(8, 12), nn.MaxPool2d(2), block(12, 8, kernel=1),
                                      block(8, 12), block(12, 12, padding=1), nn.AdaptiveAvgPool2d(1))
        self.classify = nn.Conv2d(12, 10, 1)

    def forward(self, x):
        return torch.log_softmax(self.classify(self.features(x)).flatten(1), dim=1)


class ResidualNet(torch.nn.Module):
    """Residual adds: one around two padded convolutions, one around a strided pair with a strided 1x1 shortcut;
    then a mean over every position (global average pooling as a reduction) and a linear layer. Plain scores."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.stem = nn.Conv2d(1, 8, 3)
        self.a1, self.a2 = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.b1, self.b2 = nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.Conv2d(16, 16, 3, padding=1)
        self.shortcut = nn.Conv2d(8, 16, 1, stride=2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.a2(torch.relu(self.a1(x))) + x)  # the identity second: a wrong rule taking it alone shows
        x = torch.relu(self.b2(torch.relu(self.b1(x))) + self.shortcut(x))
        return self.fc(x.mean(dim=(2, 3)))


class StridedDilatedNet(torch.nn.Module):
    """A strided and a dilated convolution, two branches joined by concatenation, max pooling, flatten, linear."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.c1, self.c2 = nn.Conv2d(1, 6, 3), nn.Conv2d(6, 6, 3)
        self.down = nn.Conv2d(6, 8, 3, stride=2)
        self.dilated = nn.Conv2d(8, 8, 3, dilation=2, padding=2)
        self.wide = nn.Conv2d(8, 8, 5, padding=2)  # reads the same span as the dilated one, all of it
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16 * 5 * 5, 10)

    def forward(self, x):
        x = torch.relu(self.down(torch.relu(self.c2(torch.relu(self.c1(x))))))
        x = torch.cat([torch.relu(self.dilated(x)), torch.relu(self.wide(x))], dim=1)
        return self.fc(torch.flatten(self.pool(x), 1))


OTHER_NETWORKS = {"helpers:AssignmentNet": AssignmentNet, "helpers:ResidualNet": ResidualNet,
                  "helpers:StridedDilatedNet": StridedDilatedNet,
                  "small:SeparableNet": SeparableNet}  # grouped (depthwise) convolutions
