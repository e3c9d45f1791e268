#!/usr/bin/env bash
# Regenerate the figures: execute notebooks/*.py with papermill, one after another.
# Run ./run_all.sh --help for usage. This script checks its arguments, sets up the environment,
# then becomes `python -m vaegen_utils.runall` (exec: same process), which runs the notebooks.
set -euo pipefail

# Mirrors vaegen_utils.profiles.PROFILES (tests/test_notebooks.py checks they agree). Kept in bash
# so that a bad argument is rejected before the environment is even set up.
PROFILES=(smoke cpu paper)
DEFAULT_PROFILE=cpu

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$REPO"  # papermill runs kernels in the repository root

usage() {
  cat <<EOF
Usage: ./run_all.sh [--profile smoke|cpu|paper] [-p KEY VALUE ...] [--run-name NAME] [notebook ...]

Execute the notebooks in notebooks/ with papermill and regenerate their figures and results.

  --profile P     smoke: seconds per notebook, same code, tiny sizes (CI, tests)
                  cpu:   the default; the committed figures/ come from this profile
                  paper: the papers' own settings (meant for a GPU)
  -p KEY VALUE    set a parameter of the notebook's parameters cell (repeatable), read like
                  papermill's -p: True/False/None, integers and floats, else a string. KEY must be
                  a parameter of every selected notebook; PROFILE is set with --profile.
                  Example: ./run_all.sh zhang2022_fig1a_overfitting -p EPOCHS 80
  --run-name N    name of this run's output folder (default: derived from profile, notebooks
                  and parameters, e.g. cpu-vaegen_datasets-SEED=1)
  notebook        names in notebooks/, with or without .py/.ipynb (default: all, sorted)
  -h, --help      show this help

Where results go:
  figures/<name>.{png,pdf,json}          a default run: cpu profile, no -p, no --run-name
                                         (the committed figures; figures/runtimes.jsonl too)
  build/figures/<run>/<name>.*           every other run: <run> = --run-name, else the profile
                                         (smoke, paper), else the derived name when -p is given;
                                         the committed figures/ are never overwritten
  build/notebooks/<name>.ipynb           unexecuted notebook converted from notebooks/<name>.py
  build/executed/<run>/<name>.ipynb      executed copy (kept on failure, error cell marked)
  build/html/<run>/<name>.html           browsable copy of each executed notebook
  <results folder>/REPORT.md             claims report (default run: also README.md's blocks)
  <results folder>/runtimes.jsonl        measured runtime per notebook (vaegen_utils.runtimes)

Prints "notebook k of n", the elapsed time and each notebook's time on record before it runs;
stops at the first failing notebook, naming it and the failing cell; ends with a table of
runtimes and claims held. The smoke profile does not echo notebook output and says that claims
are not expected to hold at smoke size; it uses its own cache, build/cache/smoke.
Ctrl-C, SIGTERM and SIGHUP stop the run and the notebook's kernel (nothing runs or writes
results afterwards); after a SIGKILL a watchdog process stops the kernel within a second.

Environment:
  VAEGEN_SKIP_SETUP=1     do not run scripts/setup.sh (use the environment as it is)
  VAEGEN_PYTHON=path      interpreter to use (default: .venv/bin/python, else python3)
  VAEGEN_CELL_TIMEOUT=s   papermill per-cell timeout in seconds (default 14400)
  VAEGEN_PROGRESS=mode    progress bars in the notebooks: text (default here), on, off
  VAEGEN_BUILD_DIR, VAEGEN_FIGURES_DIR, VAEGEN_DATA_DIR, VAEGEN_CACHE_DIR
                          override the folders (see vaegen_utils/paths.py)
EOF
}

fail_usage() {  # bad arguments: say what is valid, exit 2 before running anything
  echo "run_all.sh: error: $*" >&2
  echo "Run ./run_all.sh --help for usage." >&2
  exit 2
}

# ---------------------------------------------------------------------------------- arguments
profile="$DEFAULT_PROFILE"
run_name=""
requested=()
parameters=()  # KEY VALUE pairs, flattened
declare -A seen_keys=()
while (($# > 0)); do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --profile)
      (($# >= 2)) || fail_usage "--profile needs a value: one of ${PROFILES[*]}"
      profile="$2"; shift 2 ;;
    --profile=*) profile="${1#--profile=}"; shift ;;
    -p | --parameters)
      (($# >= 3)) || fail_usage "$1 needs a KEY and a VALUE, e.g. -p SEED 1"
      key="$2"
      [[ "$key" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || fail_usage "-p KEY must be a Python name (the notebook's parameter), got '$key'"
      [[ "$key" != PROFILE ]] || fail_usage "set the profile with --profile, not -p PROFILE"
      [[ -z "${seen_keys[$key]:-}" ]] || fail_usage "-p $key given twice"
      seen_keys[$key]=1
      parameters+=("$key" "$3"); shift 3 ;;
    --run-name)
      (($# >= 2)) || fail_usage "--run-name needs a value"
      run_name="$2"; shift 2 ;;
    --run-name=*) run_name="${1#--run-name=}"; shift ;;
    --) shift; requested+=("$@"); break ;;
    -*) fail_usage "unknown option '$1'" ;;
    *) requested+=("$1"); shift ;;
  esac
done

valid_profile=false
for candidate in "${PROFILES[@]}"; do
  [[ "$profile" == "$candidate" ]] && valid_profile=true
done
$valid_profile || fail_usage "unknown profile '$profile'; valid profiles: ${PROFILES[*]}"
if [[ -n "$run_name" ]]; then
  [[ "$run_name" =~ ^[A-Za-z0-9][A-Za-z0-9_.=+-]*$ && ${#run_name} -le 100 ]] \
    || fail_usage "--run-name '$run_name': use letters, digits and _ . = + - (at most 100, no '/')"
fi

# Every notebooks/*.py is a notebook (jupytext py:percent source). Byte order, not locale order.
LC_COLLATE=C
shopt -s nullglob
available=()
for source in notebooks/*.py; do
  name="${source##*/}"
  available+=("${name%.py}")
done
shopt -u nullglob
((${#available[@]} > 0)) || fail_usage "no notebooks found in $REPO/notebooks/*.py"

selected=()
unknown=()
for argument in "${requested[@]+"${requested[@]}"}"; do
  name="${argument##*/}"   # accept notebooks/x.py as well as x
  name="${name%.py}"
  name="${name%.ipynb}"
  if [[ -f "notebooks/$name.py" ]]; then selected+=("$name"); else unknown+=("$argument"); fi
done
if ((${#unknown[@]} > 0)); then
  fail_usage "unknown notebook(s): ${unknown[*]}; valid notebooks: ${available[*]}"
fi
all_selected=()
if ((${#selected[@]} == 0)); then
  selected=("${available[@]}")
  all_selected=(--all-selected)
fi

# ---------------------------------------------------------------------------------- environment
if [[ -z "${VAEGEN_SKIP_SETUP:-}" && -f scripts/setup.sh ]]; then
  echo "== setting up the environment (scripts/setup.sh)"
  bash scripts/setup.sh
fi
if [[ -n "${VAEGEN_PYTHON:-}" ]]; then
  PY="$VAEGEN_PYTHON"
elif [[ -x .venv/bin/python ]]; then
  PY="$REPO/.venv/bin/python"
else
  PY="$(command -v python3 || command -v python || true)"
fi
[[ -n "$PY" ]] || { echo "run_all.sh: error: no python found; run scripts/setup.sh" >&2; exit 1; }
"$PY" -c 'import papermill, jupytext, vaegen_utils.runall' 2>/dev/null || {
  echo "run_all.sh: error: $PY cannot import papermill, jupytext and vaegen_utils;" \
    "run 'bash scripts/setup.sh' (or set VAEGEN_PYTHON)" >&2
  exit 1
}

# OpenMP threads that sleep instead of spin while waiting: on a busy machine (other jobs, a
# laptop) the default spin-wait made 2-thread training ~10x slower (700 vs 7,200 images/s for the
# paper B (zhang2022) MLP, measured while another job ran). Set OMP_WAIT_POLICY yourself to override.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

parameter_args=()
for ((i = 0; i < ${#parameters[@]}; i += 2)); do
  parameter_args+=(-p "${parameters[i]}" "${parameters[i + 1]}")
done
run_name_args=()
[[ -z "$run_name" ]] || run_name_args=(--run-name "$run_name")

# exec: this process becomes the runner, so a signal sent to run_all.sh's pid reaches it directly.
exec "$PY" -m vaegen_utils.runall --project "$REPO" --profile "$profile" "${all_selected[@]+"${all_selected[@]}"}" \
  "${run_name_args[@]+"${run_name_args[@]}"}" "${parameter_args[@]+"${parameter_args[@]}"}" -- "${selected[@]}"
