"""env.py: the device, the packages' versions, and a missing package's install command."""
import os
import re

import pytest
import torch

from s5 import env
from s5.env import get_device
from helpers import ROOT


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (True, False, "cuda"),
                                                  (False, True, "mps"), (False, False, "cpu")])
@pytest.mark.quick
def test_device_preference(monkeypatch, cuda, mps, expected):
    # only the two availability probes are replaced, to walk the branches this machine lacks
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert get_device() == torch.device(expected)


def requirement_versions(filename, operator):
    with open(os.path.join(ROOT, filename)) as f:
        return dict(re.findall(rf"^([\w-]+){operator}([\w.]+)", f.read(), re.M))


def test_the_floors_are_the_same_in_the_code_and_the_requirement_files():
    ranges, floor = requirement_versions("requirements.txt", ">="), requirement_versions("requirements/floor.txt", "==")
    assert set(ranges) == set(floor)  # CI's floor environment pins every core package at its floor
    for name, version in floor.items():
        assert env._release(ranges[name]) == env._release(version), name
    for name, version in env.FLOORS.items():
        assert env._release(version) == env._release(floor[name]), name
    lock = requirement_versions("requirements/lock.txt", "==")
    for name, version in ranges.items():  # the locked versions satisfy the ranges
        assert env._release(lock[name]) >= env._release(version), name


@pytest.mark.quick
def test_a_version_below_the_floor_gets_one_sentence():
    env.check_versions({"torch": "2.6.0+cu124", "torchvision": "0.21.0"})
    with pytest.raises(ImportError, match=r"^This project needs torch 2\.6 or newer \(this Python has 2\.5\.1\+cpu\): "
                                          r"pip install -r requirements\.txt$"):
        env.check_versions({"torch": "2.5.1+cpu", "torchvision": "0.21.0"})
    with pytest.raises(ImportError, match=r"torch 2\.6 or newer .* and torchvision 0\.21 or newer \(this Python has 0\.9"):
        env.check_versions({"torch": "1.13.0", "torchvision": "0.9.1"})


@pytest.mark.quick
def test_a_missing_package_gets_the_command_that_installs_it():
    with pytest.raises(ModuleNotFoundError, match=r"^no_such_package_s5 is not installed .*`%pip install "
                                                  r"no-such-package`"):
        env.require("no_such_package_s5", "no-such-package")
    import torchsummary
    assert env.require("torchsummary", "torchsummary") is torchsummary
    with pytest.raises(ModuleNotFoundError) as error:  # a module inside a missing package names the package
        env.require("no_such_package_s5.sub", "no-such-package")
    assert str(error.value) == ("no_such_package_s5.sub is not installed (Colab and Kaggle do not ship it): run `pip "
                                "install no-such-package`, in a notebook cell `%pip install no-such-package`, or "
                                "`pip install -r requirements.txt`")


@pytest.mark.quick
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="only Linux lets a process narrow its cores")
def test_the_cores_are_those_this_process_may_run_on():
    allowed = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(allowed)})
        assert env.cores() == 1, "the machine's cores were counted, not this process's"
    finally:
        os.sched_setaffinity(0, allowed)


@pytest.mark.quick
@pytest.mark.parametrize("count, expected", [(8, 8), (None, 1)])
def test_where_the_system_cannot_say_which_cores_it_has_all_count_or_one(monkeypatch, count, expected):
    """macOS and Windows have no sched_getaffinity; os.cpu_count() may be None."""
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: count)
    assert env.cores() == expected
