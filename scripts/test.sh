#!/usr/bin/env bash
# Set up and run every test. Usage: scripts/test.sh   (the README's test command)
# Python tests run on 3.10, 3.11, 3.12 and 3.13 (pyenv), both tracing backends; torch
# and NoPdb-comparison tests on 3.11. Each interpreter gets its own venv under .venv-test/.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
ROOT=$PWD
VENVS=$ROOT/.venv-test
mkdir -p "$VENVS" artifacts
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

find_python() {  # $1 = 3.10 etc.
  local v=$1 p
  if command -v pyenv >/dev/null 2>&1; then
    p=$(ls -d "$(pyenv root)"/versions/"$v".*/bin/python 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$p" ] && { echo "$p"; return; }
  fi
  command -v "python$v" || { echo "python $v not found (install it with pyenv)" >&2; exit 1; }
}

make_venv() {  # $1 = version, $2 = extras besides "test" (comma-separated)
  local v=$1 extras=${2:+,$2}
  local venv=$VENVS/py$v
  if [ ! -x "$venv/bin/python" ]; then
    "$(find_python "$v")" -m venv "$venv"
  fi
  if [ "$v" = "3.11" ]; then
    # torch first, pinned: a loose torch requirement would pull a multi-GB CUDA build.
    "$venv/bin/pip" install -q torch==2.13.0 >&2
  fi
  "$venv/bin/pip" install -q -e ".[test$extras]" 2>&1 | grep -v "is ignored: it is neither" >&2 || true
}

summary=$ROOT/artifacts/pytest-summary.txt
: > "$summary"
run_pytest() {  # $1 = label, $2 = venv, rest = pytest args
  local label=$1 venv=$2; shift 2
  echo "::: pytest [$label]"
  "$venv/bin/python" -m pytest -q -p no:cacheprovider --junitxml="$ROOT/artifacts/junit-$label.xml" "$@"
  echo "$label" >> "$summary"
}

make_venv 3.10
make_venv 3.11 torch,bench,dev,jupyter,kerneltest
make_venv 3.12
make_venv 3.13
v310=$VENVS/py3.10 v311=$VENVS/py3.11 v312=$VENVS/py3.12 v313=$VENVS/py3.13

"$v311/bin/ruff" check nopdb_lab tests benchmarks examples scripts
"$v311/bin/ruff" format --check nopdb_lab tests benchmarks examples scripts
run_pytest py3.10-settrace "$v310" tests
run_pytest py3.11-settrace "$v311" tests
run_pytest py3.12-monitoring "$v312" tests
NOPDB_LAB_BACKEND=settrace run_pytest py3.12-settrace "$v312" tests
run_pytest py3.13-monitoring "$v313" tests

"$v311/bin/python" scripts/junit_summary.py "$ROOT"/artifacts/junit-*.xml
