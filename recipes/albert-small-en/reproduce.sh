#!/usr/bin/env bash
# Rebuild the embedded model albert-small-en from the raw corpus: vocabulary, shards, pretraining, evaluation,
# packaging.
#
#   bash recipes/albert-small-en/reproduce.sh gpu   # one CUDA GPU, one stage: at most 12 minutes of device time
#   bash recipes/albert-small-en/reproduce.sh cpu   # the earlier CPU recipe: ~8 CPU hours (~4 h on 2 cores with
#                                                   # bf16 units); a kill is resumed by rerunning with --resume
#
# It writes only under runs/ (the vocabulary, the shards, the run); the model lands in runs/albert-small-en
# (MODEL_OUT=DIR to choose; MODEL_OUT=src/albert/models/albert-small-en replaces the shipped model, on purpose
# only). Set-up: `bash scripts/setup.sh` is run if .venv lacks albert (ALBERT: another way to run the CLI, e.g.
# "python3 -m albert" with PYTHONPATH=src; PYTHON the interpreter for package.py). Further arguments go to
# `albert pretrain`.
# The corpus is checked by SHA-256 and refused if it differs: `bash corpus/build.sh runs/corpus`'s corpus.txt if it
# is there (its hash is corpus/README.md's), else ../shared/data/corpus.txt.xz; CORPUS and CORPUS_SHA256 to use
# another.
#
# On a device window (the device tool: only the working tree travels, so the corpus must be carried):
#   here:   bash corpus/build.sh runs/corpus && mkdir -p .corpus && xz -T2 -9 -c runs/corpus/corpus.txt > .corpus/corpus.txt.xz
#   device: run(carry=[".corpus"], timeout_s=600, command="PYTHONPATH=src ALBERT='python3 -m albert' \
#             CORPUS=.corpus/corpus.txt.xz CORPUS_SHA256=... bash recipes/albert-small-en/reproduce.sh gpu && cp -r runs/albert-small-en runs/albert-small-en-gpu/metrics.jsonl $OUT/")
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.malloc.hugetlb=1}  # huge pages: ~20% faster on CPUs, same results
cd "$(dirname "$0")/../.."
MODE=${1:-gpu}
[ $# -gt 0 ] && shift
if [ -z "${CORPUS:-}" ]; then
  if [ -f runs/corpus/corpus.txt ]; then
    CORPUS=runs/corpus/corpus.txt
    CORPUS_SHA256=${CORPUS_SHA256:-634fb5fd1e8fa39dfc9a76753c3929080bec020b07c9593a560cdf0edabc0078}
  else
    CORPUS=../shared/data/corpus.txt.xz
    CORPUS_SHA256=${CORPUS_SHA256:-010f43c9155a7ffe56758dba96acba18ea2cf44fd1599f9d2fa93030fc16cdfb}
  fi
fi
[ -n "${CORPUS_SHA256:-}" ] || { echo "reproduce: CORPUS=$CORPUS needs CORPUS_SHA256 (its SHA-256)" >&2; exit 2; }
echo "$CORPUS_SHA256  $CORPUS" | sha256sum -c --quiet - 2>/dev/null \
  || { echo "reproduce: $CORPUS is not the pinned corpus (SHA-256 $CORPUS_SHA256); refused" >&2; exit 2; }
if [ -z "${ALBERT:-}" ]; then
  [ -x .venv/bin/albert ] || bash scripts/setup.sh
  ALBERT=.venv/bin/albert
  PYTHON=${PYTHON:-.venv/bin/python}
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
${PYTHON:-python3} recipes/albert-small-en/package.py "$LAST" "${MODEL_OUT:-runs/albert-small-en}"
say "done"
