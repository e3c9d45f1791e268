#!/usr/bin/env bash
# Run the whole test suite: unit tests (tests/) and every notebook in the smoke profile (nbval).
# Sets up .venv first (fast when already set up). Extra arguments go to pytest, e.g.
#   ./run_tests.sh -k estimators        ./run_tests.sh -x -q
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh

# Smoke profile everywhere; figures/results of test runs go to build/, never over the committed
# cpu-profile figures; tests get their own data-independent caches.
export VAEGEN_PROFILE=smoke
export VAEGEN_FIGURES_DIR="$PWD/build/figures/smoke"
export VAEGEN_CACHE_DIR="$PWD/build/cache/smoke"
export MPLBACKEND=Agg

# One pytest session: the unit tests plus nbval over the paired notebooks (no stored outputs, so
# nbval-lax checks that each notebook runs top to bottom without error).
exec .venv/bin/python -m pytest tests notebooks/*.ipynb \
  --nbval-lax --nbval-current-env --nbval-cell-timeout=600 -p no:cacheprovider "$@"
