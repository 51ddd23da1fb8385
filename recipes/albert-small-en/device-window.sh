#!/usr/bin/env bash
# A device window for the embedded model (15 minutes of GPU time, machine start included), as two commands, each
# under the device tool's 10-minute limit. Here first, once:
#   bash corpus/build.sh runs/corpus && mkdir -p .corpus && xz -T2 -9 -c runs/corpus/corpus.txt > .corpus/corpus.txt.xz
# then, back to back (the machine stays warm ~30 s between calls):
#   run(command="bash recipes/albert-small-en/device-window.sh mfu", timeout_s=240)
#   run(command="bash recipes/albert-small-en/device-window.sh train", carry=[".corpus"], timeout_s=600)
# mfu: bench/gpu_check.py's training-step utilisation (albert-base-v2 and the embedded shape) and the base model's
# inference rows, to $OUT/gpu_check.json. train: reproduce.sh gpu (vocabulary, shards, TRAIN_MINUTES of training,
# held-out evaluation, packaging) with its log, metrics and the packaged model (in pieces under 16 MiB) in $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 ALBERT="python3 -m albert" PYTHON=python3
OUT=${OUT:-runs/device-out}
mkdir -p "$OUT"
case "${1:-}" in
  mfu)
    python3 bench/gpu_check.py --sizes base --train-sizes base embedded --repeats 5 --out "$OUT/gpu_check.json"
    ;;
  train)
    CORPUS=.corpus/corpus.txt.xz TRAIN_MINUTES=${TRAIN_MINUTES:-5} \
      bash recipes/albert-small-en/reproduce.sh gpu 2>&1 | tee "$OUT/reproduce.log"
    cp runs/albert-small-en-gpu/metrics.jsonl "$OUT/"
    tar czf - -C src/albert/models albert-small-en | split -b 15M - "$OUT/model.tgz.part-"
    ;;
  *) echo "usage: device-window.sh mfu|train" >&2; exit 2 ;;
esac
