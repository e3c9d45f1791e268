#!/usr/bin/env bash
# Build benchmarks/wheels/: the pure-Python packages benchmarks/gpu_check.sh installs on a GPU machine
# that has CUDA PyTorch (>= 2.11, Python 3.12) and numpy, pytest, tqdm, matplotlib, huggingface_hub,
# safetensors preinstalled but no internet. Versions are those of requirements-lock.txt; torch is never
# downloaded. Run here (with internet), then send the folder with the check (it is git-ignored):
#   bash benchmarks/make_wheels.sh          # ~6.4 MB: diffusers, pytorch-msssim, importlib_metadata, lazy-importer
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=benchmarks/wheels
PACKAGES=(diffusers pytorch-msssim importlib_metadata lazy-importer)  # what vaegen_utils imports beyond the image
mkdir -p "$DEST"
pinned=()
for name in "${PACKAGES[@]}"; do
  line=$(grep -i "^${name}==" requirements-lock.txt || true)
  if [[ -z "$line" ]]; then
    echo "make_wheels: $name is not pinned in requirements-lock.txt" >&2
    exit 1
  fi
  pinned+=("$line")
done
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any -d "$DEST" "${pinned[@]}"
ls -l "$DEST"
