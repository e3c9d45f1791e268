#!/usr/bin/env bash
# Regenerate the figures: execute notebooks/*.py with papermill, one after another.
# Run ./run_all.sh --help for usage. Each notebook is converted py -> ipynb into build/notebooks/
# (never over the committed pair) and executed into build/executed/<profile>/<name>.ipynb.
set -euo pipefail

# Mirrors vaegen_utils.profiles.PROFILES (tests/test_notebooks.py checks they agree). Kept in bash
# so that a bad argument is rejected before the environment is even set up.
PROFILES=(smoke cpu paper)
DEFAULT_PROFILE=cpu

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$REPO"  # papermill runs kernels in the caller's directory; make that the repository root

usage() {
  cat <<EOF
Usage: ./run_all.sh [--profile smoke|cpu|paper] [notebook ...]

Execute the notebooks in notebooks/ with papermill and regenerate their figures and results.

  --profile P   smoke: seconds per notebook, same code, tiny sizes (CI, tests)
                cpu:   the default; the committed figures/ come from this profile
                paper: the papers' own settings (meant for a GPU)
  notebook      names in notebooks/, with or without .py/.ipynb (default: all, sorted)
  -h, --help    show this help

Outputs:
  build/notebooks/<name>.ipynb             unexecuted notebook converted from notebooks/<name>.py
  build/executed/<profile>/<name>.ipynb    executed copy (kept on failure, error cell marked)
  figures/<name>.{png,pdf,json}            cpu profile (the committed figures)
  build/figures/<profile>/<name>.*         smoke and paper profiles, so committed figures stay
                                           untouched (rule: vaegen_utils.figures.output_dir)
  <results folder>/REPORT.md               claims report over every results file (cpu: also
                                           the results block of README.md)
  build/html/<profile>/<name>.html         browsable copy of each executed notebook

Stops at the first failing notebook, naming it and the failing cell; prints a summary table
(runtime, claims held / total) at the end.

Environment:
  VAEGEN_SKIP_SETUP=1     do not run scripts/setup.sh (use the environment as it is)
  VAEGEN_PYTHON=path      interpreter to use (default: .venv/bin/python, else python3)
  VAEGEN_CELL_TIMEOUT=s   papermill per-cell timeout in seconds (default 14400)
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
requested=()
while (($# > 0)); do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --profile)
      (($# >= 2)) || fail_usage "--profile needs a value: one of ${PROFILES[*]}"
      profile="$2"; shift 2 ;;
    --profile=*) profile="${1#--profile=}"; shift ;;
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

# Every notebooks/*.py is a notebook (jupytext py:percent source). Byte order, not locale order,
# for the sort; '.' as decimal point in $EPOCHREALTIME whatever the user's locale.
LC_COLLATE=C
LC_NUMERIC=C
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
((${#selected[@]} > 0)) || selected=("${available[@]}")

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
"$PY" -c 'import papermill, jupytext, vaegen_utils' 2>/dev/null || {
  echo "run_all.sh: error: $PY cannot import papermill, jupytext and vaegen_utils;" \
    "run 'bash scripts/setup.sh' (or set VAEGEN_PYTHON)" >&2
  exit 1
}

BUILD="${VAEGEN_BUILD_DIR:-$REPO/build}"
CELL_TIMEOUT="${VAEGEN_CELL_TIMEOUT:-14400}"
# OpenMP threads that sleep instead of spin while waiting: on a busy machine (other jobs, a
# laptop) the default spin-wait made 2-thread training ~10x slower (700 vs 7,200 images/s for the
# seed-001 MLP, measured while another job ran). Set OMP_WAIT_POLICY yourself to override.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
export VAEGEN_PROFILE="$profile"  # same profile for code that reads the environment, not PROFILE
RESULTS_DIR="$("$PY" -c 'import sys; from vaegen_utils.figures import output_dir; print(output_dir(sys.argv[1]))' "$profile")"
mkdir -p "$BUILD/notebooks" "$BUILD/executed/$profile"

echo "== profile $profile: ${#selected[@]} notebook(s); figures and results -> $RESULTS_DIR"

# ---------------------------------------------------------------------------------- reporting
summary_rows=()  # "name status seconds" per notebook run so far

print_summary() {
  "$PY" - "$RESULTS_DIR" "${summary_rows[@]}" <<'PYTHON'
import sys
from pathlib import Path

from vaegen_utils.results import load_results

results_dir = Path(sys.argv[1])
rows = [row.split(" ") for row in sys.argv[2:]]
print(f"\n{'notebook':<44} {'status':<7} {'runtime (s)':>11}  claims held/total")
for name, status, seconds in rows:
    claims = "-"
    path = results_dir / f"{name}.json"
    if status == "ok":
        try:
            doc = load_results(path)
            held = sum(claim["holds"] for claim in doc["claims"])
            claims = f"{held}/{len(doc['claims'])}"
        except (OSError, ValueError) as error:  # a notebook that wrote no valid results file
            claims = f"no valid results ({type(error).__name__}: {path})"
    print(f"{name:<44} {status:<7} {float(seconds):>11.1f}  {claims}")
PYTHON
}

report_failure() {  # name the failing cell, found in papermill's executed copy ($1), of notebook $2
  "$PY" - "$1" "$2" <<'PYTHON'
import json
import sys
from pathlib import Path

path, name = Path(sys.argv[1]), sys.argv[2]
if not path.is_file():
    print(f"no executed notebook at {path}: papermill failed before running any cell (see above)")
    sys.exit()
cells = json.loads(path.read_text())["cells"]
# Number the code cells as in notebooks/<name>.py: papermill's injected cell is not in the source.
code_cells = [
    cell for cell in cells
    if cell["cell_type"] == "code" and "injected-parameters" not in cell.get("metadata", {}).get("tags", [])
]
for number, cell in enumerate(code_cells, start=1):
    errors = [out for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    if errors or cell.get("metadata", {}).get("papermill", {}).get("exception"):
        source = "".join(cell["source"]).strip().splitlines()
        print(f"failing cell: code cell #{number} of notebooks/{name}.py (In [{cell.get('execution_count')}]), which starts:")
        for line in source[:6]:
            print(f"    {line}")
        for error in errors:  # the full traceback is in papermill's log above
            print(f"error: {error['ename']}: {error['evalue']}")
        break
else:
    print("papermill failed but no cell is marked failed (kernel died or cell timed out?); see the log above")
PYTHON
}

# ---------------------------------------------------------------------------------- run
for name in "${selected[@]}"; do
  source_py="notebooks/$name.py"
  unexecuted="$BUILD/notebooks/$name.ipynb"
  executed="$BUILD/executed/$profile/$name.ipynb"
  echo "== $name ($profile) -> $executed"
  rm -f "$executed"  # a stale copy must never be mistaken for this run's output
  "$PY" -m jupytext --quiet --to ipynb --output "$unexecuted" "$source_py"
  start="${EPOCHREALTIME:-$SECONDS}"
  # -k/--language: jupytext output may lack kernel metadata (practice.md 2.1); the parameter is
  # also passed so that the notebook's PROFILE matches even if it ignores the environment.
  if "$PY" -m papermill -k python3 --language python --log-output \
      --execution-timeout "$CELL_TIMEOUT" -p PROFILE "$profile" "$unexecuted" "$executed"; then
    end="${EPOCHREALTIME:-$SECONDS}"
    summary_rows+=("$name ok $("$PY" -c "print(round($end - $start, 1))")")
    # A browsable copy of the full run for readers without Jupyter (build/html/<profile>/).
    "$PY" -m nbconvert --to html --log-level WARN --output-dir "$BUILD/html/$profile" "$executed" \
      || echo "run_all.sh: warning: HTML export of $name failed (the run itself succeeded)" >&2
  else
    end="${EPOCHREALTIME:-$SECONDS}"
    summary_rows+=("$name FAILED $("$PY" -c "print(round($end - $start, 1))")")
    echo >&2
    echo "run_all.sh: notebook '$name' FAILED (profile $profile); executed copy: $executed" >&2
    report_failure "$executed" "$name" >&2
    print_summary
    exit 1
  fi
done

print_summary

# The claims report over every results file of this profile (figures/REPORT.md and the README's
# results block for the cpu profile; build/figures/<profile>/REPORT.md otherwise).
if [[ "$RESULTS_DIR" == "$REPO/figures" ]]; then
  "$PY" -m vaegen_utils.report --figures "$RESULTS_DIR"
else
  "$PY" -m vaegen_utils.report --figures "$RESULTS_DIR" --no-readme
fi
echo "HTML copies of the executed notebooks: $BUILD/html/$profile/"
