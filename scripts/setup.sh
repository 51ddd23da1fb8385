#!/usr/bin/env bash
# Create the virtual environment and install albert into it.
#   scripts/setup.sh          .venv with albert and its extras, within pyproject.toml's ranges (what users get)
#   scripts/setup.sh test     .venv with the test tools at the exact versions and hashes of requirements/test.txt
#   scripts/setup.sh latest   .venv-latest with the test tools at the newest releases within the ranges
# torch is the CPU build: an unpinned torch would pull a multi-GB CUDA build; the pinned 2.13.0+cpu wheel comes from
# the wheels folder pip is configured with here (TORCH_WHEELS to point elsewhere), as in scripts/lock.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
mode=${1:-user}
VENV=.venv
[ "$mode" = latest ] && VENV=.venv-latest
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() {  # quiet, but a failed install stops the set-up (with pip's own words)
  local log status=0
  log=$(mktemp)
  "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" >"$log" 2>&1 || status=$?
  grep -v "^WARNING: Location" "$log" >&2 || true  # (grep exits 1 when nothing is left to show)
  rm -f "$log"
  [ $status = 0 ] || { echo "setup: pip $1 failed (exit $status)" >&2; exit 1; }
}
case "$mode" in
  test)
    # uv installs the pinned, hashed set (in parallel, compiled to bytecode as pip does): ~30 s where pip took 80
    pip install --require-hashes --no-deps -r requirements/uv.txt
    "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --require-hashes --no-deps --compile-bytecode \
      --find-links "${TORCH_WHEELS:-/opt/wheels}" -r requirements/test.txt \
      || { echo "setup: requirements/test.txt did not install (uv above)" >&2; exit 1; }
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
