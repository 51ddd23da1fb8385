#!/usr/bin/env bash
# Set up the test environment at the exact versions of requirements/*.txt, then lint, type-check and run the test
# suite on both cores, then the tokenizer-exactness tests against transformers 4.57 (in .tf4). Extra arguments go to
# pytest (`scripts/test.sh -m slow` for the long tests).
#   scripts/test.sh --latest   the same against the newest releases within pyproject.toml's ranges, in .venv-latest:
#                              drift found on purpose, by us (scripts/lock.sh then refreshes the pins)
# What runs on one core only (apt, mypy) runs beside something else; every step's failure fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT

# the page test drives a real browser: Debian's chromium and its driver (CI runs as root and installs them, beside
# the Python set-up); test_page.py skips only outside CI
chromium_wanted() { ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; }
chromium=""
if chromium_wanted; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
      >"$LOGS/apt" 2>&1 &
    chromium=$!
  else
    echo "test: chromium/chromedriver missing and not root; the page test will be skipped" >&2
  fi
fi

if [ "${1:-}" = --latest ]; then
  shift
  VENV=.venv-latest
  bash scripts/setup.sh latest
else
  bash scripts/setup.sh test
fi
echo "test: set-up done at ${SECONDS} s" >&2
"$VENV/bin/ruff" check src tests bench recipes corpus
"$VENV/bin/mypy" src >"$LOGS/mypy" 2>&1 &  # one core, while .tf4 installs and the suite starts
mypy=$!

# The tokenizer's exactness against transformers 4.57's SentencePiece AlbertTokenizer (gone in 5): 4.57 and the
# releases it needs, at requirements/tf4.txt's versions, in a folder of their own ahead of transformers 5
if ! cmp -s requirements/tf4.txt .tf4/.installed-from 2>/dev/null; then
  rm -rf .tf4
  "$VENV/bin/python" -m pip --disable-pip-version-check -q install --no-deps --require-hashes --target .tf4 \
    -r requirements/tf4.txt >"$LOGS/tf4" 2>&1 || { cat "$LOGS/tf4" >&2; echo "test: transformers 4.57 did not install" >&2
                                                  exit 1; }
  cp requirements/tf4.txt .tf4/.installed-from
fi
PYTHONPATH=.tf4 "$VENV/bin/python" -c "import transformers; assert transformers.__version__.startswith('4.57'), \
transformers.__version__" || { echo "test: transformers 4.57 in .tf4 does not import" >&2; exit 1; }

if [ -n "$chromium" ] && ! wait "$chromium"; then
  tail -5 "$LOGS/apt" >&2
  echo "test: chromium and chromium-driver did not install (apt-get above)" >&2
  exit 1
fi
echo "test: the suite starts at ${SECONDS} s" >&2
# both cores (pytest-xdist; conftest.py shares the expensive fixtures between the two workers)
"$VENV/bin/python" -m pytest -n 2 --dist worksteal "$@"
echo "test: the suite done at ${SECONDS} s" >&2
wait "$mypy" || { cat "$LOGS/mypy" >&2; exit 1; }
cat "$LOGS/mypy"
PYTHONPATH=.tf4 "$VENV/bin/python" -m pytest -m sentencepiece_reference tests/test_tokenizer.py
