#!/usr/bin/env bash
# Heatmap viewer latency: click → painted, head switch, 12-head grid, for a captured
# 12x197x197 tensor, and click → painted for a lazy 2,048-token attention record, in
# JupyterLab on Debian's Chromium (medians of BENCH_RUNS runs, 9 by default). Needs what `bash scripts/test.sh` sets up (.venv-test/lab and ui-tests deps).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PWD/.venv-test/lab/bin:$PATH
cd ui-tests
CI=1 jlpm playwright test --config playwright.bench.config.js 2>&1 | grep -v "^\[WebServer\]"
