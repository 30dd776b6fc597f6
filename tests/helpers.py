"""Where the repository and MNIST are, and what the tests of a command share: the tracked files, a command's help,
a free port and waiting for a server. The other helpers live by their job: browser.py (Debian's Chromium and the
strokes of a digit), inputs.py (digit images as users hand them in), notebooks.py (what a notebook run printed),
zoo.py (networks of other kinds than Net)."""
import hashlib
import os
import shutil
import socket
import subprocess
import time

from s5.data import default_data_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.path.abspath(default_data_dir())


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


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def stop(server):
    """Stops a server process: asked first, killed if it is still shutting down after a minute (a busy machine)."""
    server.terminate()
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
