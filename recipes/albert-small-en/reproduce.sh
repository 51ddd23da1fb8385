#!/usr/bin/env bash
# Rebuild the embedded model from the raw corpus: vocabulary, shards, pretraining, packaging.
#   bash recipes/albert-small-en/reproduce.sh        # the shipped model: two stages on one CUDA GPU (~15 min on an H100)
#   bash recipes/albert-small-en/reproduce.sh cpu    # the earlier CPU recipe (~4 h on a 2-core CPU with bf16 units)
# Needs ../shared/data/corpus.txt.xz (or CORPUS=...). Further arguments go to every `albert pretrain`.
set -euo pipefail
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.malloc.hugetlb=1}  # huge pages: ~20% faster on CPUs, same results
cd "$(dirname "$0")/../.."
MODE=${1:-gpu}
[ $# -gt 0 ] && shift
CORPUS=${CORPUS:-../shared/data/corpus.txt.xz}
albert tokenizer train --input "$CORPUS" --vocab-size 16000 --max-sentences 400000 --out runs/albert-small-en-tokenizer
albert data prepare --input "$CORPUS" --tokenizer runs/albert-small-en-tokenizer --out runs/albert-small-en-data \
  --eval-fraction 0.01
if [ "$MODE" = cpu ]; then
  albert pretrain --config recipes/albert-small-en/pretrain.yaml "$@"          # stage 1: stops at step 900
  # stage 2, from stage 1's step 900; STAGE2_STOP_AFTER=N stops it at its step N (as an interim model was)
  albert pretrain --config recipes/albert-small-en/pretrain-stage2.yaml ${STAGE2_STOP_AFTER:+--stop_after "$STAGE2_STOP_AFTER"} "$@"
  LAST=runs/albert-small-en-stage2
else
  albert pretrain --config recipes/albert-small-en/pretrain-gpu.yaml "$@"         # stage 1: 5,000 steps
  albert pretrain --config recipes/albert-small-en/pretrain-gpu-stage2.yaml "$@"  # stage 2: 3,600 more
  LAST=runs/albert-small-en-gpu2
fi
albert plot "$LAST"                                                                 # both stages' curves
python recipes/albert-small-en/package.py "$LAST" src/albert/models/albert-small-en
