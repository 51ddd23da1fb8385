#!/usr/bin/env bash
# Create .venv and install albert into it. `scripts/setup.sh test` adds the test tools.
# torch is pinned to the CPU build first: an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
pip install "torch==${TORCH_VERSION:-2.13.0}" numpy 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import torch" || { echo "setup: torch did not install" >&2; exit 1; }
if [ "${1:-}" = "test" ]; then
  pip install -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
else
  pip install -e ".[hub,plot,data,serve]" 2>&1 | grep -v "^WARNING: Location" || true
fi
.venv/bin/albert --help >/dev/null || { echo "setup: albert did not install" >&2; exit 1; }
