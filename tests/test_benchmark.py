import re
import subprocess
import sys

from conftest import ROOT


def test_benchmark_measures_both_pipelines_and_ends_with_the_speedup():
    run = subprocess.run([sys.executable, "benchmark.py", "--rounds", "1", "--steps", "2"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    assert re.fullmatch(r"speedup: \d+\.\d\d", lines[-1])
    rates = {name: float(rate) for name, rate in re.findall(r"round 1 (seed|fast):\s+(\d+) images/s", run.stdout)}
    assert set(rates) == {"seed", "fast"} and all(rate > 0 for rate in rates.values())
    for part in ("augmentation", "forward", "backward", "optimizer"):
        assert re.search(rf"^  {part}\s+\d+\.\d ms", run.stdout, re.M), part
    assert re.search(r"bf16 matmul peak \d+ GFLOP/s", run.stdout)
