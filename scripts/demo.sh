#!/usr/bin/env bash
# Set up a virtualenv (.venv) with the project and run the demo. The README's first command.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
[ -x .venv/bin/python ] || python3 -m venv .venv
# torch first, pinned: a loose torch requirement would pull a multi-GB CUDA build here.
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e ".[torch]"
exec .venv/bin/python examples/demo.py
