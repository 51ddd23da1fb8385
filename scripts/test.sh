#!/usr/bin/env bash
# Set up (with test extras), then lint, type-check and run the test suite. Extra arguments go to pytest
# (e.g. `scripts/test.sh -m slow` for the long tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
# the page test drives a real browser: Debian's chromium and its driver (CI runs as root and may install them)
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
      >/dev/null 2>&1 || echo "test: could not install chromium; the page test will be skipped" >&2
  else
    echo "test: chromium/chromedriver missing and not root; the page test will be skipped" >&2
  fi
fi
.venv/bin/ruff check src tests bench recipes
.venv/bin/mypy src
.venv/bin/python -m pytest "$@"
