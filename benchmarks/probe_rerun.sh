#!/usr/bin/env bash
# Probe re-run latency: click Re-run → probe re-run in the kernel → the edit view's map and
# its Δ marks repainted, in JupyterLab on Debian's Chromium, for vnittest's example network
# (goal ≤ 300 ms) and a ViT-S/16 from random weights (goal ≤ 1.5 s); medians of BENCH_RUNS
# runs (7 by default), see ui-tests/benchmarks/probe.bench.ts. Needs what
# `bash scripts/test.sh` sets up (.venv-test/lab and ui-tests deps) plus transformers in the
# lab venv (LAB_VENV, .venv-test/lab by default). BENCH_THREADS: torch threads (2).
set -euo pipefail
cd "$(dirname "$0")/.."
LAB_VENV=${LAB_VENV:-$PWD/.venv-test/lab}
if ! "$LAB_VENV/bin/python" -c "import torch, transformers" 2>/dev/null; then
  echo "probe_rerun.sh: $LAB_VENV needs torch and transformers (the ViT-S/16 is a" >&2
  echo "transformers ViTForImageClassification): $LAB_VENV/bin/pip install transformers" >&2
  exit 1
fi
export PATH=$LAB_VENV/bin:$PATH
cd ui-tests
CI=1 jlpm playwright test --config playwright.bench.config.js benchmarks/probe.bench.ts 2>&1 |
  grep -v "^\[WebServer\]"
