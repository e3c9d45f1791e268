#!/usr/bin/env bash
# Measure the engine's speed ratios on this machine; prints a table, writes benchmarks/results.json.
# About 3 minutes on 2 cores (--quick: about 1 minute, noisier). Close other heavy processes first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python benchmarks/bench.py "$@"
