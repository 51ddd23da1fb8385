#!/usr/bin/env bash
# Rebuild the embedded model from the raw corpus: vocabulary, shards, pretraining, evaluation, packaging.
#   bash recipes/albert-small-en/reproduce.sh gpu   # one CUDA GPU, one stage, at most 12 minutes of device time
#   bash recipes/albert-small-en/reproduce.sh cpu   # the earlier CPU recipe (~4 h on a 2-core CPU with bf16 units)
# CORPUS: the text to train on (default: the larger corpus of `bash corpus/build.sh runs/corpus` if it is there,
# else ../shared/data/corpus.txt.xz). ALBERT: how to run the CLI ("python3 -m albert" with PYTHONPATH=src on a
# machine where the package is not installed), PYTHON the interpreter for package.py, MODEL_OUT where the model
# goes (src/albert/models/albert-small-en). Further arguments go to `albert pretrain`.
#
# On a device window (the device tool: only the working tree travels, so the corpus must be carried):
#   here:   bash corpus/build.sh runs/corpus && mkdir -p .corpus && xz -T2 -9 -c runs/corpus/corpus.txt > .corpus/corpus.txt.xz
#   device: run(carry=[".corpus"], timeout_s=600, command="PYTHONPATH=src ALBERT='python3 -m albert' \
#             CORPUS=.corpus/corpus.txt.xz bash recipes/albert-small-en/reproduce.sh gpu && cp -r src/albert/models/albert-small-en runs/albert-small-en-gpu/metrics.jsonl $OUT/")
set -euo pipefail
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.malloc.hugetlb=1}  # huge pages: ~20% faster on CPUs, same results
cd "$(dirname "$0")/../.."
MODE=${1:-gpu}
[ $# -gt 0 ] && shift
ALBERT=${ALBERT:-albert}
if [ -z "${CORPUS:-}" ]; then
  if [ -f runs/corpus/corpus.txt ]; then CORPUS=runs/corpus/corpus.txt; else CORPUS=../shared/data/corpus.txt.xz; fi
fi
start=$(date +%s)
say() { echo "reproduce.sh [$(( $(date +%s) - start )) s] $*"; }
rm -rf runs/albert-small-en-tokenizer runs/albert-small-en-data  # a rebuild starts from the corpus
say "vocabulary from $CORPUS"
$ALBERT tokenizer train --input "$CORPUS" --vocab-size "${VOCAB_SIZE:-16000}" --max-sentences 400000 --out runs/albert-small-en-tokenizer --quiet
say "shards"
$ALBERT data prepare --input "$CORPUS" --tokenizer runs/albert-small-en-tokenizer --out runs/albert-small-en-data \
  --eval-fraction 0.01 --workers "$(nproc)" --quiet
if [ "$MODE" = cpu ]; then
  $ALBERT pretrain --config recipes/albert-small-en/pretrain.yaml "$@"          # stage 1: stops at step 900
  # stage 2, from stage 1's step 900; STAGE2_STOP_AFTER=N stops it at its step N (as an interim model was)
  $ALBERT pretrain --config recipes/albert-small-en/pretrain-stage2.yaml ${STAGE2_STOP_AFTER:+--stop_after "$STAGE2_STOP_AFTER"} "$@"
  LAST=runs/albert-small-en-stage2
else
  rm -rf runs/albert-small-en-gpu
  # the recipe study's winner, packed and compiled, on a wall-clock budget (TRAIN_MINUTES, 6 by default) so that
  # start-up, vocabulary, shards, training, evaluation and packaging fit 12 minutes of device time
  say "pretraining"
  $ALBERT pretrain --config recipes/albert-small-en/pretrain-gpu.yaml --time_budget_minutes "${TRAIN_MINUTES:-6}" "$@"
  LAST=runs/albert-small-en-gpu
fi
say "plot and package (held-out MLM and SOP measured on every held-out sequence)"
$ALBERT plot "$LAST"
${PYTHON:-python3} recipes/albert-small-en/package.py "$LAST" "${MODEL_OUT:-src/albert/models/albert-small-en}"
say "done"
