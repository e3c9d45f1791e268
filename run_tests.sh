#!/usr/bin/env bash
# Run the whole test suite: unit tests (tests/) and every notebook in the smoke profile (nbval).
# Sets up .venv first (fast when already set up). Extra arguments go to pytest, e.g.
#   ./run_tests.sh -k estimators        ./run_tests.sh -x -q
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh

# Smoke profile everywhere; figures/results of test runs go to build/, never over the committed
# cpu-profile figures; tests get their own data-independent caches.
# OpenMP threads that sleep instead of spin while waiting: on a busy machine (other jobs, a
# laptop) the default spin-wait made 2-thread training ~10x slower (700 vs 7,200 images/s for the
# paper B (zhang2022) MLP, measured while another job ran). Set OMP_WAIT_POLICY yourself to override.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
export VAEGEN_PROFILE=smoke
export VAEGEN_FIGURES_DIR="$PWD/build/figures/smoke"
export VAEGEN_CACHE_DIR="$PWD/build/cache/smoke"
export MPLBACKEND=Agg

# One pytest session: the unit tests plus nbval over the paired notebooks (no stored outputs, so
# nbval-lax checks that each notebook runs top to bottom without error).
exec .venv/bin/python -m pytest tests notebooks/*.ipynb \
  --nbval-lax --nbval-current-env --nbval-cell-timeout=600 -p no:cacheprovider "$@"
