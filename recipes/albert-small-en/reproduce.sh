#!/usr/bin/env bash
# Rebuild the embedded model from the raw corpus: vocabulary, shards, pretraining, packaging.
# Needs ../shared/data/corpus.txt.xz (or CORPUS=...). About 2.5 hours on a 2-core CPU with AMX.
set -euo pipefail
cd "$(dirname "$0")/../.."
CORPUS=${CORPUS:-../shared/data/corpus.txt.xz}
albert tokenizer train --input "$CORPUS" --vocab-size 16000 --max-sentences 400000 --out runs/albert-small-en-tokenizer
albert data prepare --input "$CORPUS" --tokenizer runs/albert-small-en-tokenizer --out runs/albert-small-en-data \
  --eval-fraction 0.01
albert pretrain --config recipes/albert-small-en/pretrain.yaml "$@"
albert plot runs/albert-small-en
python recipes/albert-small-en/package.py runs/albert-small-en src/albert/models/albert-small-en
