#!/usr/bin/env bash
# Set up .venv with nopdb-lab (front end built by `pip install .`) and open the demo
# notebooks (examples/attention.ipynb, examples/demo.ipynb) in JupyterLab. The README's
# first command. Extra arguments go to `jupyter lab`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
[ -x .venv/bin/python ] || python3 -m venv .venv
# torch first, pinned: a loose torch requirement would pull a multi-GB CUDA build here.
.venv/bin/pip install -q torch==2.13.0
# builds the labextension (JupyterLab's jlpm, in pip's isolated build env) into the wheel
.venv/bin/pip install -q ".[torch,jupyter,lab,demo]"
.venv/bin/pip install -q --force-reinstall --no-deps .   # this checkout, even if unchanged
args=()
[ "$(id -u)" = 0 ] && args+=(--allow-root)   # JupyterLab refuses root without it
exec .venv/bin/jupyter lab "${args[@]}" "$@" examples/attention.ipynb examples/demo.ipynb
