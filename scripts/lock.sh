#!/usr/bin/env bash
# Refresh the test environment's exact pins, with hashes: requirements/test.txt (the .venv that scripts/test.sh
# builds), requirements/uv.txt (the installer that builds it) and requirements/tf4.txt (transformers 4.57 and what it needs, in .tf4, for the tokenizer-exactness
# tests). Each takes the newest releases within pyproject.toml's ranges on the day it is run; commit both files
# after `bash scripts/test.sh` passes on them. torch is the CPU build, 2.13.0+cpu, from the wheels folder pip is
# configured with here (TORCH_WHEELS to point elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
[ -x .venv-lock/bin/uv ] || { python3 -m venv .venv-lock && .venv-lock/bin/python -m pip -q install "uv==$UV_VERSION"; }
uv() { .venv-lock/bin/uv "$@"; }
overrides=$(mktemp)
trap 'rm -f "$overrides"' EXIT
echo "torch==${TORCH_VERSION:-2.13.0}+cpu" > "$overrides"
uv pip compile pyproject.toml --extra test --generate-hashes --python-version 3.11 \
  --find-links "${TORCH_WHEELS:-/opt/wheels}" --override "$overrides" --custom-compile-command "bash scripts/lock.sh" \
  -o requirements/test.txt
# the installer scripts/setup.sh uses for the test environment
uv pip compile requirements/uv.in --generate-hashes --python-version 3.11 --custom-compile-command "bash scripts/lock.sh" \
  -o requirements/uv.txt
# .tf4 is installed with --no-deps beside .venv's packages: exactly these, nothing resolved around them
uv pip compile requirements/tf4.in --no-deps --generate-hashes --python-version 3.11 \
  --custom-compile-command "bash scripts/lock.sh" -o requirements/tf4.txt
