"""A student's own file of networks, broken in the ways first files break: each gets one sentence that names the
file, the line and what went wrong, never a traceback."""
import textwrap

import pytest

import budget
from s5 import networks

GOOD_HEAD = """
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.fc = nn.Linear(8 * 26 * 26, 10)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))
"""


@pytest.fixture
def student_file(tmp_path, monkeypatch):
    """Writes a module of the student's into the folder the command runs from; returns its name."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(name, source):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        return name
    return write


def sentence(spec):
    with pytest.raises(networks.NetworkError) as error:
        networks.build(spec)
    message = str(error.value)
    assert "\n" not in message, "one line"
    return message


@pytest.mark.quick
def test_a_file_name_given_for_the_module_is_named_with_the_fix():
    assert sentence("my_s7.py:Net7") == "my_s7.py:Net7 names the file my_s7.py: name its module without .py, my_s7:Net7"


@pytest.mark.quick
def test_a_syntax_error_names_the_file_and_the_line(student_file):
    name = student_file("nets_syntax", GOOD_HEAD + "\n\nclass Net2(nn.Module)\n    pass\n")
    assert sentence(f"{name}:Net") == "nets_syntax.py, line 16: SyntaxError: expected ':'; fix it and run again"


@pytest.mark.quick
def test_a_missing_package_imported_by_the_file_is_named_with_its_line(student_file):
    name = student_file("nets_import", "import torch\nimport not_a_package_anywhere\n" + GOOD_HEAD)
    assert sentence(f"{name}:Net") == ("nets_import imports not_a_package_anywhere, which this Python does not have "
                                       "(nets_import.py, line 2): install it, or import something else")


@pytest.mark.quick
def test_an_error_while_the_file_runs_names_the_line(student_file):
    name = student_file("nets_runs", GOOD_HEAD + "\nscale = 1 / 0\n")
    assert sentence(f"{name}:Net") == ("Importing nets_runs failed at nets_runs.py, line 15: ZeroDivisionError: "
                                       "division by zero")


@pytest.mark.quick
def test_an_error_in_the_constructor_names_the_line(student_file):
    """A public file's slip: super(Net, self) inside class Net_2, where no Net is defined."""
    name = student_file("nets_init", """
        import torch.nn as nn


        class Net_2(nn.Module):
            def __init__(self):
                super(Net, self).__init__()
        """)
    assert sentence(f"{name}:Net_2") == ("Building nets_init:Net_2 failed at nets_init.py, line 7: NameError: name "
                                         "'Net' is not defined")


@pytest.mark.quick
def test_a_constructor_that_wants_arguments_asks_for_defaults(student_file):
    name = student_file("nets_args", "import torch.nn as nn\n\n\nclass Wide(nn.Module):\n"
                                     "    def __init__(self, channels):\n        super().__init__()\n")
    assert sentence(f"{name}:Wide").startswith("nets_args:Wide cannot be built without arguments (")


@pytest.mark.quick
def test_an_error_in_forward_names_the_line_of_the_students_code_not_pytorchs(student_file):
    name = student_file("nets_forward", GOOD_HEAD.replace("8 * 26 * 26", "100"))
    message = sentence(f"{name}:Net")
    assert message.startswith("nets_forward:Net cannot read a batch of shape (N, 1, 28, 28): RuntimeError: "), message
    assert message.endswith("(nets_forward.py, line 13)"), "the line of the student's forward that called PyTorch"


@pytest.mark.quick
def test_budget_says_a_broken_file_in_one_sentence_with_its_documented_exit_code(student_file, capsys):
    name = student_file("nets_budget", GOOD_HEAD + "\n\nclass Net2(nn.Module)\n    pass\n")
    assert budget.main([f"{name}:Net"]) == 2, "bad input: exit 2, as the help says"
    error = capsys.readouterr().err.strip()
    assert error == "budget.py: nets_budget.py, line 16: SyntaxError: expected ':'; fix it and run again"


@pytest.mark.quick
def test_weights_that_do_not_fit_name_a_few_missing_and_unexpected_keys(tmp_path):
    import torch
    from zoo import ResidualNet
    torch.save(ResidualNet().state_dict(), tmp_path / "residual.pt")
    with pytest.raises(networks.NetworkError) as error:
        networks.load("model:Net", str(tmp_path / "residual.pt"))
    assert str(error.value) == (
        f"{tmp_path / 'residual.pt'} does not fit model:Net (missing key(s) \"conv1.weight\", \"conv1.bias\", "
        "\"conv2.weight\" and 9 more; unexpected key(s) \"stem.weight\", \"stem.bias\", \"a1.weight\" and 11 more): "
        "it was saved from another network: name that one with --network, or give weights trained for model:Net "
        "with --checkpoint")


def saved_run(path, network):
    """A finished run's record of `network`, as the notebook saves it, with the network's fresh weights."""
    import torch
    from s5.checkpoint import save_record
    from s5.training import Recipe
    torch.manual_seed(0)
    model = networks.build(network)
    save_record(str(path), model, {"test_acc": [50.0]}, network=network, recipe=Recipe(epochs=1), seed=1, fast=True,
                precision="fp32", cuda_graph=False, train_seconds=1.0)
    return model


@pytest.mark.quick
def test_a_runs_record_alone_gives_its_network_and_weights(student_file, tmp_path):
    name = student_file("nets_record", GOOD_HEAD)
    trained = saved_run(tmp_path / "run.pt", f"{name}:Net")
    model = networks.load(None, str(tmp_path / "run.pt"))
    assert networks.name_of(model) == "nets_record:Net", "the class the record names"
    assert str(model.state_dict()) == str(trained.state_dict()), "with the run's weights"


@pytest.mark.quick
def test_a_record_naming_a_module_from_elsewhere_is_refused_without_importing_it(student_file, tmp_path,
                                                                                 monkeypatch):
    """A record is data: a module found only elsewhere on Python's path is never imported because a file names it."""
    import sys
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "nets_far.py").write_text(GOOD_HEAD)
    monkeypatch.syspath_prepend(str(elsewhere))
    saved_run(tmp_path / "run.pt", "nets_far:Net")
    del sys.modules["nets_far"]
    with pytest.raises(networks.NetworkError) as error:
        networks.load(None, str(tmp_path / "run.pt"))
    assert str(error.value) == (f"{tmp_path / 'run.pt'} records the network nets_far:Net, whose module is neither in "
                                "the folder you run from nor among this project's: run from the folder that holds "
                                "it, or name the class with --network")
    assert "nets_far" not in sys.modules, "the module was imported all the same"
    assert networks.name_of(networks.load("nets_far:Net", str(tmp_path / "run.pt"))) == "nets_far:Net", \
        "named with --network, the same weights load"


@pytest.mark.quick
def test_a_network_named_against_the_record_is_refused(student_file, tmp_path):
    name = student_file("nets_named", GOOD_HEAD)
    saved_run(tmp_path / "run.pt", f"{name}:Net")
    with pytest.raises(networks.NetworkError, match="holds weights of nets_named:Net, not of model:Net"):
        networks.load("model:Net", str(tmp_path / "run.pt"))


@pytest.mark.quick
def test_predict_given_a_run_alone_says_which_network_it_used(student_file, tmp_path, capsys):
    import predict
    from PIL import Image
    name = student_file("nets_predict", GOOD_HEAD)
    saved_run(tmp_path / "run.pt", f"{name}:Net")
    Image.new("L", (28, 28), 255).save(tmp_path / "blank.png")
    predict.main(["--checkpoint", str(tmp_path / "run.pt"), str(tmp_path / "blank.png")])
    assert f"predict.py: nets_predict:Net, as the record of {tmp_path / 'run.pt'} names it" in capsys.readouterr().err


@pytest.mark.quick
def test_explain_given_a_run_alone_says_which_network_it_used(student_file, tmp_path, capsys):
    import explain
    name = student_file("nets_explain", GOOD_HEAD)
    saved_run(tmp_path / "run.pt", f"{name}:Net")
    assert explain.main(["--checkpoint", str(tmp_path / "run.pt")]) == 0
    shown = capsys.readouterr()
    assert f"explain.py: nets_explain:Net, as the record of {tmp_path / 'run.pt'} names it" in shown.err
    assert shown.out.startswith("layer "), "the receptive-field table of that network"


@pytest.mark.quick
def test_explain_given_a_network_and_a_run_of_another_refuses_them_in_one_sentence_with_exit_2(student_file, tmp_path,
                                                                                                 capsys):
    import explain
    name = student_file("nets_mismatch", GOOD_HEAD)
    saved_run(tmp_path / "run.pt", f"{name}:Net")
    assert explain.main(["--network", "model:Net", "--checkpoint", str(tmp_path / "run.pt")]) == 2, "the named one"
    assert "holds weights of nets_mismatch:Net, not of model:Net" in capsys.readouterr().err


@pytest.mark.quick
def test_git_ignores_the_files_commands_write_by_default_and_keeps_the_shipped_ones():
    import os
    import subprocess
    from helpers import ROOT
    written = [networks.file_name(name, suffix) for name in (networks.DEFAULT, "my_nets:Net6")
               for suffix in (".pt", ".onnx")] + ["runs/my_nets.Net6-seed1.pt", "S5.out.ipynb"]
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=ROOT, capture_output=True, text=True)
    if top.returncode != 0 or os.path.realpath(top.stdout.strip()) != os.path.realpath(ROOT):
        pytest.skip("the project's folder is not the root of a git checkout")
    checked = subprocess.run(["git", "check-ignore", "--no-index", *written, "s5_net.pt", "web/s5_net.onnx"],
                             cwd=ROOT, capture_output=True, text=True)
    assert checked.stdout.split() == written, f"ignored: {checked.stdout.split()}; should be exactly {written}"


@pytest.mark.quick
def test_an_error_deep_in_the_students_helpers_names_the_deepest_line(student_file):
    name = student_file("nets_deep", """
        import torch.nn as nn


        def widths():
            return [8][1]


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.widths = widths()
        """)
    assert sentence(f"{name}:Net") == ("Building nets_deep:Net failed at nets_deep.py, line 6: IndexError: list index "
                                       "out of range")


@pytest.mark.quick
def test_code_without_a_file_is_passed_over_for_the_deepest_line_that_has_one():
    try:
        exec(compile("1 / 0", "<string>", "exec"))  # as exec'd code, or an older IPython's cells, name themselves
    except ZeroDivisionError as e:
        assert networks.where(e).startswith("test_networks.py, line "), networks.where(e)


@pytest.mark.quick
def test_an_error_with_no_line_of_its_own_says_so():
    assert networks.where(ValueError("never raised")) == "an unknown line"


@pytest.mark.quick
def test_a_record_naming_a_module_in_a_package_of_the_working_folder_is_importable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "s7.py").write_text(GOOD_HEAD)
    assert networks.importable_from_here("nets.s7:Net"), "nets/s7.py, in the folder the command runs from"
    assert not networks.importable_from_here("nets.s8:Net"), "no nets/s8.py here"
