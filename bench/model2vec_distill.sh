#!/usr/bin/env bash
# A model2vec static model distilled from a local sentence-transformers teacher, offline, for bench/retrieval.py's
# model2vec contender. model2vec's distillation needs transformers < 5.4 (albert's tests pin a newer one), so it runs
# in an environment of its own, .venv-model2vec; the bench itself loads the result with model2vec alone
# (requirements/bench.txt).
#   bash bench/model2vec_distill.sh TEACHER_DIR OUT_DIR [PCA_DIMS]     (default 256, model2vec's default)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n 2,6p "$0" >&2; exit 2; }
TEACHER=$(cd "$1" && pwd)
OUT=$2
DIMS=${3:-256}
[ ! -e "$OUT" ] || { echo "model2vec_distill: $OUT exists; choose a new directory" >&2; exit 2; }
VENV=.venv-model2vec
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" --disable-pip-version-check -q install torch==2.13.0 "transformers>=5.0,<5.4" \
    "model2vec[distill,quantization]==0.10.0"
fi
HF_HUB_OFFLINE=1 "$VENV/bin/python" - "$TEACHER" "$OUT" "$DIMS" <<'PY'
import sys
from model2vec.distill import distill

teacher, out, dims = sys.argv[1], sys.argv[2], int(sys.argv[3])
distill(model_name=teacher, pca_dims=dims).save_pretrained(out)
print(f"model2vec_distill: {out} ({dims} dimensions) from {teacher}")
PY
