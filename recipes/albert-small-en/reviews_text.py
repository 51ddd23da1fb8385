"""Text the embedded model has never seen, from another domain: product reviews, for package.py --also.

    python recipes/albert-small-en/reviews_text.py OUT.txt [--tasks ../shared/data/tasks] [--max 3000]
    albert data prepare --input OUT.txt --tokenizer src/albert/models/albert-small-en --out DIR --eval-fraction 0.999

Writes the fine-food reviews of the sentiment task's train split (Amazon Fine Food Reviews via SNAP, the
Debian r-cran-modeldata package, MIT) with three or more sentences as documents, one sentence per line (a
blank line between reviews), so that segment pairs and their sentence order come from sentence boundaries
as they do in the corpus.
"""

from __future__ import annotations

import argparse
import json
import lzma
import re
from pathlib import Path

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--tasks", default=str(Path(__file__).resolve().parents[3] / "shared" / "data" / "tasks"))
    ap.add_argument("--max", type=int, default=3000)
    a = ap.parse_args()
    written = 0
    with lzma.open(Path(a.tasks) / "fine_foods_sentiment" / "train.jsonl.xz", "rt", encoding="utf-8") as f, \
            open(a.out, "w", encoding="utf-8") as out:
        for line in f:
            text = json.loads(line)["text"].replace("<br />", " ")
            sentences = [s.strip() for s in SENTENCE_END.split(text) if s.strip()]
            if len(sentences) >= 3:
                out.write("\n".join(sentences) + "\n\n")
                written += 1
                if written == a.max:
                    break
    print(f"wrote {written} reviews to {a.out}")


if __name__ == "__main__":
    main()
