"""Tokenizer throughput: ours vs transformers' slow (sentencepiece) and fast (Rust) AlbertTokenizer.

    python bench/tokenizer_speed.py [--mb 10] [--tokenizer DIR] [--out bench/results/tokenizer_speed.json]

Encodes about `--mb` MB of the corpus in batches of 1000 lines (input_ids, token types, attention
mask; no padding), alternating the tokenizers, and reports MB/s medians. It also counts lines whose
ids differ from the slow tokenizer (the reference semantics).
"""

from __future__ import annotations

import argparse
import json
import lzma
import statistics
import time
from pathlib import Path

import torch

from albert.runtime import cpu_description
from albert.tokenizer import AlbertTokenizer, train_tokenizer

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "corpus.txt.xz"
FIXTURE = ROOT / "tests" / "fixtures" / "public_domain.txt"


def load_lines(mb: float) -> tuple[list[str], str]:
    lines: list[str] = []
    size = 0
    if CORPUS.is_file():
        source = str(CORPUS)
        with lzma.open(CORPUS, "rt", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    lines.append(line.rstrip("\n"))
                    size += len(line.encode())
                    if size >= mb * 1e6:
                        break
    else:  # machines without ../shared: the committed fixture, repeated
        source = str(FIXTURE)
        base = [x for x in FIXTURE.read_text(encoding="utf-8").splitlines() if x.strip()]
        while size < mb * 1e6:
            lines.extend(base)
            size += sum(len(x.encode()) + 1 for x in base)
    return lines, source


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=10.0)
    ap.add_argument("--tokenizer", default=None, help="a tokenizer dir (default: the embedded model's)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "tokenizer_speed.json"))
    a = ap.parse_args()
    import transformers

    lines, source = load_lines(a.mb)
    size_mb = sum(len(x.encode()) for x in lines) / 1e6
    tok_dir = Path(a.tokenizer) if a.tokenizer else ROOT / "src" / "albert" / "models" / "albert-small-en"
    if not (tok_dir / "spiece.model").is_file():
        tok_dir = Path("/tmp/bench_tokenizer")
        if not (tok_dir / "spiece.model").is_file():
            train_tokenizer([FIXTURE], tok_dir, vocab_size=8000, progress=False)
    ours = AlbertTokenizer.from_pretrained(tok_dir)
    slow = transformers.AlbertTokenizer.from_pretrained(str(tok_dir))
    fast = transformers.AlbertTokenizerFast.from_pretrained(str(tok_dir))
    batches = [lines[i:i + 1000] for i in range(0, len(lines), 1000)]
    contenders = {"ours": ours, "transformers_fast": fast, "transformers_slow": slow}
    times: dict[str, list[float]] = {k: [] for k in contenders}
    outputs: dict[str, list[list[int]]] = {}
    for r in range(a.repeats):
        for name, tok in contenders.items():
            if name == "transformers_slow" and r > 0:
                continue  # ~40 s per pass; one is enough
            t = time.perf_counter()
            ids = [row for b in batches for row in tok(b)["input_ids"]]
            times[name].append(time.perf_counter() - t)
            outputs[name] = ids
    mbs = {k: size_mb / statistics.median(v) for k, v in times.items()}
    mismatches = {k: sum(x != y for x, y in zip(outputs[k], outputs["transformers_slow"]))
                  for k in ("ours", "transformers_fast")}
    result = {
        "benchmark": "tokenizer_speed", "source": source, "mb": round(size_mb, 2), "lines": len(lines),
        "batch_lines": 1000, "tokenizer": str(tok_dir), "threads": torch.get_num_threads(),
        "machine": cpu_description(),
        "mb_per_s": {k: round(v, 3) for k, v in mbs.items()},
        "seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "ratio_ours_vs_fast": round(mbs["ours"] / mbs["transformers_fast"], 2),
        "ratio_ours_vs_slow": round(mbs["ours"] / mbs["transformers_slow"], 2),
        "lines_differing_from_slow": mismatches,
        "transformers_version": transformers.__version__,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
