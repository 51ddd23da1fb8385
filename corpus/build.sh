#!/usr/bin/env bash
# Build the larger English pretraining corpus (more than twice ../shared/data/corpus.txt.xz in words): that corpus
# plus prose from pinned Debian packages (corpus/build_corpus.py lists them, with what is taken and its licence).
#   bash corpus/build.sh OUT [BASE]        BASE: the base corpus, ../shared/data/corpus.txt.xz by default
# Writes OUT/corpus.txt, OUT/stats.json; checks every .deb and the result against corpus/manifest.json, so a
# rebuild from a clean checkout gives the same corpus byte for byte (or says which input differs).
# Needs Debian's apt (bookworm), and diatheke and groff (installed here when missing, as root).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: bash corpus/build.sh OUT [BASE]}
BASE=${2:-$HERE/../../shared/data/corpus.txt.xz}
[ -f "$BASE" ] || { echo "build.sh: no base corpus at $BASE" >&2; exit 2; }
mkdir -p "$OUT/debs" "$OUT/root"
OUT=$(cd "$OUT" && pwd)
need=()
command -v diatheke >/dev/null || need+=(diatheke)
command -v groff >/dev/null || need+=(groff-base)
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"; fi
cd "$OUT/debs"
mapfile -t specs < <(python3 "$HERE/build_corpus.py" --packages)
missing=()
for spec in "${specs[@]}"; do
  name=${spec%%=*}
  ls "${name}"_*.deb >/dev/null 2>&1 || missing+=("$spec")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get download "${missing[@]}" 2>/dev/null || { apt-get update -qq && apt-get download "${missing[@]}"; }
fi
python3 "$HERE/build_corpus.py" --check-debs "$OUT/debs"
for f in *.deb; do
  d="$OUT/root/$(dpkg-deb -f "$f" Package)"
  [ -d "$d" ] || dpkg-deb -x "$f" "$d"
done
python3 "$HERE/build_corpus.py" --debs "$OUT/root" --base "$BASE" --out "$OUT"
python3 "$HERE/build_corpus.py" --check-corpus "$OUT"
