#!/usr/bin/env bash
# Each patch here breaks one feature on purpose; the test its first line names must then fail. For every patch (or
# those given): a scratch copy of the checkout's src/ and tests/, the patch applied, that test run against the copy.
#   bash tests/mutations/check.sh [PATCH ...]       prints "caught" or "MISSED" per patch; exit 1 if any is missed
# A patch file starts with "Test: tests/FILE.py::TEST" and a line saying what it breaks, then the diff (git apply).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PY=${PY:-$ROOT/.venv/bin/python}
patches=("$@")
[ ${#patches[@]} -gt 0 ] || patches=(tests/mutations/*.patch)
missed=0
for patch in "${patches[@]}"; do
  test_id=$(sed -n 's/^Test: //p' "$patch" | head -1)
  [ -n "$test_id" ] || { echo "$patch: no 'Test:' line" >&2; exit 2; }
  scratch=$(mktemp -d)
  cp -r src tests pyproject.toml "$scratch/"
  (cd "$scratch" && git apply --unsafe-paths "$ROOT/$patch") || { echo "$patch: does not apply" >&2; exit 2; }
  # the copy's albert ahead of the installed (editable) one, in this process and the CLI subprocesses it starts
  # the copy's albert ahead of the installed (editable) one, in this process and the CLI subprocesses it starts
  rc=0
  (cd "$scratch" && PYTHONPATH="$scratch/src" timeout 900 "$PY" -m pytest -q -x -p no:cacheprovider --no-header \
     -o addopts="" "$test_id" >"$scratch/log" 2>&1) || rc=$?
  if [ $rc = 1 ]; then  # pytest's "tests failed" (not 2-5: interrupted, an error of its own, nothing collected)
    echo "caught  $patch ($test_id)"
  else
    echo "MISSED  $patch ($test_id: pytest exit $rc)"; tail -5 "$scratch/log"
    missed=1
  fi
  rm -rf "$scratch"
done
exit $missed
