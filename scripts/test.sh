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
.venv/bin/ruff check src tests bench recipes corpus
.venv/bin/mypy src
.venv/bin/python -m pytest "$@"
# The tokenizer's exactness against transformers 4.57's SentencePiece AlbertTokenizer (gone in 5): 4.57 and the
# tokenizers/hub releases it needs, in a folder of their own, ahead of the environment's transformers 5
if [ ! -f .tf4/transformers/__init__.py ] || [ ! -d .tf4/requests ]; then
  # huggingface_hub 0.36 (what 4.57 needs) still talks through requests
  .venv/bin/python -m pip --disable-pip-version-check -q install --no-deps --target .tf4 "transformers==4.57.6" \
    "tokenizers==0.22.1" "huggingface_hub==0.36.2" "requests>=2.31" "urllib3>=2" "charset-normalizer>=3" "idna>=3" \
    "certifi" 2>&1 | grep -v "^WARNING: Location" || true
fi
PYTHONPATH=.tf4 .venv/bin/python -c "import transformers; assert transformers.__version__.startswith('4.57'), \
transformers.__version__" || { echo "test: transformers 4.57 in .tf4 does not import" >&2; exit 1; }
PYTHONPATH=.tf4 .venv/bin/python -m pytest -m sentencepiece_reference tests/test_tokenizer.py
