#!/usr/bin/env bash
# The GPU figures in one go, on a CUDA machine: the card and torch version, the CUDA tests, the original pipeline
# against the fast path, the whole 20-epoch fast recipe (S5.ipynb, fast=True) on three seeds, the same forced
# to fp16, and the CPU benchmark on all the machine's cores and on two.
#
# Needs: a CUDA GPU, python3 with torch, requirements/dev.txt's packages (or their wheels in .whl/), MNIST (or .gpu_data/*.gz).
# In detail: the wheels in .whl/ are installed into a temporary folder; MNIST is read where s5/data.py looks for it
# (MNIST_DATA_DIR), or unpacked from its four files gzipped in .gpu_data/. If one is missing, it says so in one line.
# GPU_CHECK_DRY_RUN=1 runs every step, tiny, on any device.
set -euo pipefail
cd "$(dirname "$0")/.."  # the repository root
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/s5-site .whl/*.whl
  export PYTHONPATH="/tmp/s5-site${PYTHONPATH:+:$PYTHONPATH}"
fi
if compgen -G ".gpu_data/*.gz" > /dev/null; then
  export MNIST_DATA_DIR=/tmp/s5-data
  mkdir -p "$MNIST_DATA_DIR/MNIST/raw"
  for f in .gpu_data/*.gz; do gunzip -c "$f" > "$MNIST_DATA_DIR/MNIST/raw/$(basename "$f" .gz)"; done
fi
if [ "${GPU_CHECK_DRY_RUN:-0}" = 1 ]; then
  rounds=(--rounds 1 --steps 2) full=(--epochs 1 --subset 1024) seeds=(1) cpu_rounds=(--rounds 1 --steps 2)
else
  rounds=(--rounds 3 --steps 20) full=(--epochs 20) seeds=(1 2 3) cpu_rounds=(--rounds 2 --steps 4)
fi
python3 - <<'PY'
import importlib.util, os, torch
missing = [m for m in ("torchvision", "torchsummary", "papermill", "ipykernel", "matplotlib", "tqdm", "pytest")
           if importlib.util.find_spec(m) is None]
from s5.data import default_data_dir
raw = os.path.join(os.path.abspath(default_data_dir()), "MNIST", "raw", "train-images-idx3-ubyte")
if missing:
    raise SystemExit(f"gpu_check.sh needs {', '.join(missing)}: pip install -r requirements/dev.txt, or put their "
                     "wheels in .whl/")
if not os.path.exists(raw):
    raise SystemExit(f"gpu_check.sh needs MNIST in {os.path.dirname(raw)}: set MNIST_DATA_DIR, or put the four "
                     "files gzipped in .gpu_data/")
if not torch.cuda.is_available() and os.environ.get("GPU_CHECK_DRY_RUN") != "1":
    raise SystemExit("gpu_check.sh needs a CUDA GPU, and torch sees none (GPU_CHECK_DRY_RUN=1 runs it anyway)")
print(f"torch {torch.__version__}; device:", torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA GPU")
PY
failures=0
step() {  # one figure's failure is named, and the figures after it are still made
  "$@" || { echo "gpu_check.sh: this step failed: $*"; failures=$((failures + 1)); }
}
step python3 -m pytest -q -p no:cacheprovider tests/test_fast.py tests/test_utils.py -k "cuda or device"
step python3 benchmark.py "${rounds[@]}"
for seed in "${seeds[@]}"; do step python3 benchmark.py --full --seed "$seed" "${full[@]}"; done
echo "the fast recipe forced to fp16 with the gradient scaler (what a T4 gets), which trains eagerly:"
S5_PRECISION=fp16 step python3 benchmark.py --full --seed 1 "${full[@]}"
echo "the CPU pipelines on all $(nproc) cores, then on 2 of them:"
CUDA_VISIBLE_DEVICES= step python3 benchmark.py "${cpu_rounds[@]}"
CUDA_VISIBLE_DEVICES= OMP_NUM_THREADS=2 step taskset -c 0,1 python3 benchmark.py "${cpu_rounds[@]}"
exit $((failures > 0))
