"""The repository's text: it speaks of the project alone, the README stays a front page whose links and
variables are real."""
import importlib
import importlib.util
import json
import os
import re

import pytest

from helpers import ROOT, help_words, tracked_files

# Words about how the project was made, not about the project; placeholders a reader cannot fill in.
FORBIDDEN = re.compile(r"\bsessions?\b|\bissues?\b|closing\snote|\bthe\sdevelopers?\b|\.\./shared|URL_OF_|\bTODO\b|"
                       r"\bFIXME\b|\bXXX\b", re.I)
# What may say them all the same: the course's name, pytest's fixture scope, links to other projects' issues.
ALLOWED = re.compile(r"ERA Session 5|Session 5 assignment|scope=\"session\"|https://github\.com/[\w.-]+/[\w.-]+/issues/\d+")
# CI's script names the folder where CI finds MNIST; this file names the words it forbids.
NOT_CHECKED = {".ci/run", "tests/test_docs.py"}
TEXT = (".py", ".md", ".txt", ".ipynb", ".sh", ".cfg", ".ini", ".html", ".js", ".json", ".css", ".yml", ".yaml", "")

pytestmark = pytest.mark.quick  # every test here takes well under a second


def text_files():
    names = tracked_files()
    if names is None:
        pytest.skip("the repository is not a git checkout, so its tracked files are unknown")
    return [name for name in names if os.path.splitext(name)[1] in TEXT and name not in NOT_CHECKED
            and not name.endswith("package-lock.json")]


def forbidden_words(text):
    return [match.group(0) for match in FORBIDDEN.finditer(ALLOWED.sub("", text))]


def test_forbidden_words_are_found_and_allowed_phrases_pass():
    assert forbidden_words("as issue 5 said, in a session; see ../shared/data") == ["issue", "session", "../shared"]
    assert forbidden_words('ERA Session 5, @pytest.fixture(scope="session"), '
                           "https://github.com/pytorch/pytorch/issues/123") == []


def readable_lines(name):
    """A file's lines as a person reads them: a notebook's sources and text outputs, not its pictures' base64."""
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        if not name.endswith(".ipynb"):
            return f.read().splitlines()
        notebook = json.load(f)
    lines = []
    for cell in notebook["cells"]:
        lines += "".join(cell["source"]).splitlines()
        for output in cell.get("outputs", []):
            lines += "".join(output.get("text", []) + output.get("data", {}).get("text/plain", [])).splitlines()
    return lines


def test_the_tracked_text_speaks_of_the_project_alone():
    found = {}
    for name in text_files():
        for number, line in enumerate(readable_lines(name), 1):
            for word in forbidden_words(line):
                found.setdefault(name, []).append(f"{number}: {word}")
    assert found == {}


def readme():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def test_the_readme_is_a_front_page_whose_links_resolve():
    text = readme()
    assert len(text.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if not link.startswith("http")]
    assert "docs/testing.md" in local
    assert [link for link in local if not os.path.exists(os.path.join(ROOT, link))] == []
    for name in os.listdir(os.path.join(ROOT, "docs")):
        if name.endswith(".md"):
            assert f"docs/{name}" in local, f"docs/{name} is not linked from the README"


def environment_variables_read():
    """Every variable the project's code reads: os.environ.get("NAME") or os.environ["NAME"], by name."""
    found = set()
    for name in tracked_files() or []:
        if name.endswith((".py", ".sh")) and not name.startswith("tests/"):
            with open(os.path.join(ROOT, name), encoding="utf-8") as f:
                code = f.read()
            constants = dict(re.findall(r"^([A-Z_]+) = \"([A-Z0-9_]+)\"", code, re.M))
            for name in re.findall(r"environ(?:\.get\(|\[)\s*([A-Z_]+|\"[A-Z0-9_]+\")", code):
                found.add(constants.get(name, name.strip('"')))
            found |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]+):-", code))  # a shell setting with its default
    return found


def test_the_readme_names_every_environment_variable_the_code_reads():
    table = "\n".join(line for line in readme().splitlines() if line.startswith("| `"))
    missing = [name for name in environment_variables_read() if f"`{name}`" not in table]
    assert missing == []


def test_the_sharing_page_names_the_onnx_files_real_input_and_output():
    """The names export.py gives the file's input and output, which the page and a visitor's own code use."""
    with open(os.path.join(ROOT, "export.py")) as f:
        names = re.search(r'^INPUT, OUTPUT = "(\w+)", "(\w+)"$', f.read(), re.M)
    assert names, "export.py names the file's input and output in one line"
    with open(os.path.join(ROOT, "docs", "sharing.md")) as f:
        page = f.read()
    for role, name in zip(("input", "output"), names.groups()):
        assert f"`{name}`" in page, f"docs/sharing.md does not name the file's {role}, {name}"


@pytest.mark.parametrize("command", ["quicklook", "budget", "compare", "explain", "predict", "export", pytest.param(
    "app", marks=pytest.mark.skipif(importlib.util.find_spec("gradio") is None, reason="the demo's packages are not "
                                    "installed: pip install -r requirements/app.txt"))])
def test_each_commands_help_shows_its_docstring_as_written_and_its_exit_status(command, capsys):
    words = help_words(importlib.import_module(command), capsys)
    assert re.search(r"Exit status:? \d", words), f"{command}.py's --help does not say what its exit status means"
