#!/usr/bin/env bash
# Gradient-flow view latency: open, paint of 2,000 links, threshold move, in JupyterLab on
# Debian's Chromium (medians of BENCH_RUNS runs, 9 by default); see
# ui-tests/benchmarks/flow.bench.ts. Needs what `bash scripts/test.sh` sets up
# (.venv-test/lab and ui-tests deps).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PWD/.venv-test/lab/bin:$PATH
cd ui-tests
CI=1 jlpm playwright test --config playwright.bench.config.js benchmarks/flow.bench.ts 2>&1 | grep -v "^\[WebServer\]"
