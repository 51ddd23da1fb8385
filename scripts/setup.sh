#!/usr/bin/env bash
# Create the virtual environment and install albert into it.
#   scripts/setup.sh          .venv with albert and its extras, within pyproject.toml's ranges (what users get)
#   scripts/setup.sh test     .venv with the test tools at the exact versions and hashes of requirements/test.txt
#   scripts/setup.sh latest   .venv-latest with the test tools at the newest releases within the ranges
# torch is the CPU build: an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
mode=${1:-user}
VENV=.venv
[ "$mode" = latest ] && VENV=.venv-latest
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" 2>&1 | grep -v "^WARNING: Location" || true; }
case "$mode" in
  test)
    pip install --require-hashes --no-deps -r requirements/test.txt
    pip install --no-deps --no-build-isolation -e .
    "$VENV/bin/python" -m pip --disable-pip-version-check check >/dev/null \
      || { echo "setup: requirements/test.txt is inconsistent (bash scripts/lock.sh refreshes it)" >&2; exit 1; } ;;
  latest)
    pip install "torch==${TORCH_VERSION:-2.13.0}" numpy
    pip install --upgrade --upgrade-strategy eager -e ".[test]" ;;
  user)
    pip install "torch==${TORCH_VERSION:-2.13.0}" numpy
    pip install -e ".[hub,plot,data,serve]" ;;
  *) echo "setup: unknown mode '$mode' (test or latest, or none)" >&2; exit 2 ;;
esac
"$VENV/bin/python" -c "import torch" || { echo "setup: torch did not install" >&2; exit 1; }
"$VENV/bin/albert" --help >/dev/null || { echo "setup: albert did not install" >&2; exit 1; }
