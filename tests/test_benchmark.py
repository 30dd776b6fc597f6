import os
import re
import subprocess
import sys

import pytest

from s5.fast import precision_choice
from s5.training import precision_name
from helpers import ROOT

# the precision this machine's fast path uses: the benchmark must measure in it, never in one it emulates
HERE = precision_name(precision_choice("cpu", "auto")[0])


def run_benchmark(*argv, **env):
    # batches of 128 rather than the recipe's 512: the same code paths in about half the time
    run = subprocess.run([sys.executable, "benchmark.py", "--rounds", "1", "--steps", "2", "--batch-size", "128", *argv],
                         cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, **env})
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


@pytest.mark.mnist
def test_benchmark_measures_both_pipelines_and_ends_with_the_speedup(monkeypatch):
    monkeypatch.delenv("S5_PRECISION", raising=False)
    out = run_benchmark()
    assert re.fullmatch(r"speedup: \d+\.\d\d", out.strip().splitlines()[-1])
    original = float(re.search(r"^original pipeline \(.*\):\s+(\d+) images/s \(median\)$", out, re.M).group(1))
    fast_line = re.search(r"^fast path \(.*\):\s+(\d+) images/s \(median\); precision (\w+): .+$", out, re.M)
    assert fast_line, "the fast path's line with its rate and the reason for its precision"
    fast = float(fast_line.group(1))
    assert fast_line.group(2) == HERE, "the precision named is the one the fast path chose"
    speedup = float(out.strip().splitlines()[-1].split()[-1])
    assert speedup == pytest.approx(fast / original, abs=0.01 + 0.5 / original * speedup), "the printed numbers agree"
    assert "model:Net (593,200 parameters)" in out
    rates = {name: float(rate) for name, rate in re.findall(r"round 1 (original|fast):\s+(\d+) images/s", out)}
    assert set(rates) == {"original", "fast"}, "round 1 names both pipelines"
    assert all(rate > 0 for rate in rates.values()), rates
    for part in ("augmentation", "forward", "backward", "optimizer"):
        assert re.search(rf"^  {part}\s+\d+\.\d ms", out, re.M), part
    assert re.search(rf"\(cpu, {HERE}, batch 128; {HERE} matmul peak \d+ GFLOP/s\)", out)
    assert f"batched augmentation, {HERE}, channels_last" in out
    assert re.search(rf"^fast path at \d+% of this device's {HERE} limit \(\d+ GFLOP/s / 223 MFLOP per training "
                     r"image = \d+ images/s\)$", out, re.M)
    cell = r"\s+\d+\.\d ms\s+\d+\s+\d+%"
    convs = re.findall(rf"^  (conv\d)\s+([\dx]+)  {cell}\s+(not needed|{cell}){cell}{cell}$", out, re.M)
    assert [(name, shape) for name, shape, _ in convs] == [
        ("conv1", "1x28x28"), ("conv2", "32x26x26"), ("conv3", "64x12x12"), ("conv4", "128x10x10")]
    # the data's gradient is never computed; every other input gradient is timed
    assert [input_gradient == "not needed" for *_, input_gradient in convs] == [True, False, False, False]


@pytest.mark.mnist
@pytest.mark.skipif(HERE != "bf16", reason="this CPU has no native bf16, so the bf16 run would be emulated")
def test_benchmark_follows_a_forced_precision():
    out = run_benchmark(S5_PRECISION="fp32")
    assert "(cpu, fp32, batch 128; fp32 matmul peak" in out


def test_too_few_rounds_or_steps_are_refused_in_one_sentence():
    for argv in (["--rounds", "0"], ["--steps", "1"]):
        run = subprocess.run([sys.executable, "benchmark.py", *argv], cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 2
        assert run.stderr.splitlines()[-1].endswith("error: --rounds must be at least 1 and --steps at least 2")


def test_a_bad_network_or_recipe_is_refused_in_one_sentence():
    for argv, words in ((["--network", "model:Nope"], "model has no class 'Nope'"),
                        (["--lr", "0"], "The recipe's lr must be above 0, not 0.0")):
        run = subprocess.run([sys.executable, "benchmark.py", *argv], cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 2, run.stderr
        assert words in run.stderr.splitlines()[-1], run.stderr


@pytest.mark.quick
def test_the_breakdown_times_a_convolution_without_bias_as_batch_norm_networks_have_them():
    import torch
    import benchmark
    conv = torch.nn.Conv2d(8, 10, 3, bias=False)
    forward, input_gradient, weight_gradient = benchmark.conv_times(conv, torch.randn(4, 8, 12, 12), None, 2)
    assert forward > 0
    assert input_gradient > 0
    assert weight_gradient > 0


@pytest.mark.quick
def test_without_the_data_offline_it_says_what_to_do_in_one_sentence(tmp_path):
    closed = "http://127.0.0.1:9"  # a proxy on a closed local port: every download fails at once, as offline
    env = {**os.environ, "MNIST_DATA_DIR": str(tmp_path / "data"), "http_proxy": closed, "https_proxy": closed,
           "HTTP_PROXY": closed, "HTTPS_PROXY": closed, "no_proxy": "", "NO_PROXY": ""}
    run = subprocess.run([sys.executable, "benchmark.py", "--rounds", "1", "--steps", "2"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr[-3000:]
    assert run.stderr.startswith(f"benchmark.py: MNIST is not in {tmp_path / 'data' / 'MNIST' / 'raw'} and could "
                                 "not be downloaded (")


@pytest.mark.quick
def test_the_report_names_the_layout_each_network_trains_in(mnist_train):
    import torch
    import benchmark
    from s5.fast import FastPath
    from model import Net
    from small import SmallNet
    from s5.training import Training
    path = FastPath(torch.utils.data.Subset(mnist_train, range(64)), None, "cpu", 64)
    assert benchmark.layout_of(path.training(Net()).step) == "channels_last"
    assert benchmark.layout_of(path.training(SmallNet()).step) == "NCHW"
    assert benchmark.layout_of(Training.plain(SmallNet(), "cpu", [], None).step) == "NCHW"


@pytest.mark.mnist
def test_the_ablation_times_the_fast_step_without_each_mechanism_acting_here(monkeypatch):
    """Net on the CPU: channels_last acts (no batch norm), and so does the kept freed memory on Linux; the
    precision acts only where the CPU's choice is not fp32."""
    import benchmark
    monkeypatch.delenv("S5_PRECISION", raising=False)
    out = run_benchmark("--ablation")
    acting = benchmark.mechanisms_here("model:Net")
    assert "channels_last" in acting, "Net trains in channels_last on the CPU"
    assert ("precision" in acting) == (HERE != "fp32"), "the precision is a mechanism only where it is not fp32"
    rows = re.findall(r"^(\S+(?: memory)?)\s+(\d+\.\d) ms\s+(\d+\.\d) ms  [+-]\d+%$", out, re.M)
    assert [name for name, *_ in rows] == acting, out
    assert len({with_ms for _, with_ms, _ in rows}) == 1, "every row compares with the same full fast path"


@pytest.mark.mnist
def test_the_full_run_trains_the_recipe_it_was_given():
    """--epochs reaches the notebook's recipe: one epoch here, not the original's 20."""
    run = subprocess.run([sys.executable, "benchmark.py", "--full", "--epochs", "1", "--subset", "512",
                          "--batch-size", "128"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert re.search(r"^full fast run of model:Net on cpu \(\w+\): 1 epochs, seed 1: wall ", run.stdout, re.M), \
        run.stdout
