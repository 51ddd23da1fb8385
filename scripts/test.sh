#!/usr/bin/env bash
# Set up (with test extras), then lint, type-check and run the test suite. Extra arguments go to pytest
# (e.g. `scripts/test.sh -m slow` for the long tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
.venv/bin/ruff check src tests bench recipes
.venv/bin/mypy src
.venv/bin/python -m pytest "$@"
