#!/usr/bin/env bash
# The GPU check (issue 15, part 3): on one CUDA GPU, in <= 8 minutes on an H100,
#   1. the device tests: tests/test_device_cuda.py (marker `cuda`) and tests/test_device.py,
#   2. benchmarks/gpu_check.py: every workload's steps/s against its roofline bound, the β-sweep
#      ensemble vs sequential, torch.compile on/off, bf16 vs float32 agreement, and a 60 s slice of
#      paper C's paper-profile training; writes benchmarks/results-gpu.json.
# Uses the machine's preinstalled CUDA PyTorch (never installs torch) and installs only the pure-Python
# wheels of benchmarks/wheels/ (made beforehand with benchmarks/make_wheels.sh; no internet needed)
# into a temporary folder. Extra arguments go to gpu_check.py (e.g. --quick).
# When $OUT is set (a folder that is collected afterwards), the JSON and both logs are copied there.
#   bash benchmarks/make_wheels.sh     # once, where pip reaches PyPI
#   bash benchmarks/gpu_check.sh       # on the GPU machine, from a copy of this repository
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
LOGS="${OUT:-build/gpu_check}"
mkdir -p "$LOGS"
started=$(date +%s)

SITE="$(mktemp -d /tmp/vaegen-site.XXXXXX)"
if compgen -G "benchmarks/wheels/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" benchmarks/wheels/*.whl \
    || { echo "gpu_check: installing benchmarks/wheels/*.whl failed" >&2; exit 3; }
else
  echo "gpu_check: no benchmarks/wheels/*.whl (run benchmarks/make_wheels.sh first); using what is installed" >&2
fi
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
# Caches, data and figures of this check live in temporary folders: nothing of the repository changes
# except benchmarks/results-gpu.json. Tetrominoes are generated there (about 10 s).
SCRATCH="$(mktemp -d /tmp/vaegen-gpu-check.XXXXXX)"
export VAEGEN_CACHE_DIR="$SCRATCH/cache" VAEGEN_DATA_DIR="${VAEGEN_DATA_DIR:-$SCRATCH/data}"
export VAEGEN_FIGURES_DIR="$SCRATCH/figures" VAEGEN_PROFILE=smoke MPLBACKEND=Agg PYTHONUNBUFFERED=1

"$PYTHON" - <<'PY' || exit 4
import sys
import torch
major, minor = (int(part) for part in torch.__version__.split(".")[:2])
problems = []
if (major, minor) < (2, 11):
    problems.append(f"torch {torch.__version__} is older than 2.11 (pyproject.toml's floor)")
if not torch.cuda.is_available():
    problems.append("torch sees no CUDA GPU")
for module in ("diffusers", "pytorch_msssim", "numpy", "pytest", "tqdm"):
    try:
        __import__(module)
    except ImportError as error:
        problems.append(f"cannot import {module} ({error}); run benchmarks/make_wheels.sh and send benchmarks/wheels")
if problems:
    sys.exit("gpu_check: " + "; ".join(problems))
print(f"gpu_check: torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}, "
      f"python {sys.version.split()[0]}")
PY

status=0
timeout 170 "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_device_cuda.py tests/test_device.py -rs 2>&1 \
  | tee "$LOGS/gpu_check_pytest.log"
[[ ${PIPESTATUS[0]} -eq 0 ]] || { echo "gpu_check: device tests FAILED (log: $LOGS/gpu_check_pytest.log)"; status=1; }

timeout 300 "$PYTHON" benchmarks/gpu_check.py "$@" 2>&1 | tee "$LOGS/gpu_check_bench.log"
[[ ${PIPESTATUS[0]} -eq 0 ]] || { echo "gpu_check: gpu_check.py FAILED or timed out (log: $LOGS/gpu_check_bench.log)"; status=1; }
if [[ -f benchmarks/results-gpu.json && "$LOGS" != "build/gpu_check" ]]; then
  cp benchmarks/results-gpu.json "$LOGS/"
fi
rm -rf "$SITE" "$SCRATCH"
echo "gpu_check: done in $(( $(date +%s) - started )) s, status $status"
exit $status
