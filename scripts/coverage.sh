#!/usr/bin/env bash
# Line coverage of src/albert by the default suite (coverage.py at requirements/test.txt's pin), the test processes
# and every CLI process they start: bash scripts/coverage.sh [PYTEST ARGS]; the total is the last line printed.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -f .coverage .coverage.*
status=0
.venv/bin/python -m coverage run -m pytest -n 2 -p no:cacheprovider "$@" || status=$?
.venv/bin/python -m coverage combine -q
.venv/bin/python -m coverage report --format=total | sed 's/^/line coverage of src\/albert: /;s/$/%/'
exit $status
