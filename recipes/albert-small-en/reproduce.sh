#!/usr/bin/env bash
# Rebuild the embedded model from the raw corpus: vocabulary, shards, pretraining, packaging.
# Needs ../shared/data/corpus.txt.xz (or CORPUS=...). About 4 hours on a 2-core CPU with AMX or AVX512-BF16.
set -euo pipefail
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.malloc.hugetlb=1}  # huge pages: ~20% faster, same results
cd "$(dirname "$0")/../.."
CORPUS=${CORPUS:-../shared/data/corpus.txt.xz}
albert tokenizer train --input "$CORPUS" --vocab-size 16000 --max-sentences 400000 --out runs/albert-small-en-tokenizer
albert data prepare --input "$CORPUS" --tokenizer runs/albert-small-en-tokenizer --out runs/albert-small-en-data \
  --eval-fraction 0.01
albert pretrain --config recipes/albert-small-en/pretrain.yaml "$@"          # stage 1: stops at step 900
# stage 2, from stage 1's step 900; STAGE2_STOP_AFTER=N stops it at its step N (as an interim model was)
albert pretrain --config recipes/albert-small-en/pretrain-stage2.yaml ${STAGE2_STOP_AFTER:+--stop_after "$STAGE2_STOP_AFTER"} "$@"
albert plot runs/albert-small-en-stage2                                      # both stages' curves
python recipes/albert-small-en/package.py runs/albert-small-en-stage2 src/albert/models/albert-small-en
