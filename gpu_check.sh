#!/usr/bin/env bash
# On a CUDA machine, in about 5 minutes: which card, the CUDA tests, the seed-vs-fast benchmark, and the
# whole 20-epoch fast recipe (S5.ipynb with fast=True) with its wall time and final test accuracy.
# Needs the packages of requirements-dev.txt and MNIST in $MNIST_DATA_DIR/MNIST/raw (default ../data).
set -euo pipefail
cd "$(dirname "$0")"
export MNIST_DATA_DIR="${MNIST_DATA_DIR:-../data}" PYTHONUNBUFFERED=1
python - <<'PY'
import torch
assert torch.cuda.is_available(), "gpu_check.sh needs a CUDA GPU, and torch sees none"
print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
PY
python -m pytest -q tests/test_utils.py -k "cuda or device"
python benchmark.py --rounds 3 --steps 20
python benchmark.py --full --seed 1
