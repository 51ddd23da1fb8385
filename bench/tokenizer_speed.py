"""Tokenizer throughput: ours vs transformers' fast (Rust) and slow (sentencepiece) AlbertTokenizer, on two text
shapes: short lines (the corpus's lines, batches of 1000) and long texts (≥ 2,000 characters: consecutive corpus
lines joined, batches of 256).

    PYTHONPATH=.tf4 python bench/tokenizer_speed.py [--mb 10] [--tokenizer DIR] [--out ...]

Run it with transformers 4.57 (`.tf4`, which scripts/test.sh makes): its slow tokenizer is the reference
semantics (SentencePiece), and the ids of ours and of the fast one are compared with it. Encodes about `--mb` MB
per shape (input_ids, token types, attention mask; no padding), alternating the tokenizers; MB/s medians.
"""

from __future__ import annotations

import argparse
import json
import lzma
import statistics
import time
from pathlib import Path

import torch

from albert.runtime.kernels import cpu_description
from albert.tokenization.tokenizer import AlbertTokenizer
from albert.tokenization.vocabulary import train_tokenizer

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


def long_texts(lines: list[str], at_least: int = 2000) -> list[str]:
    """Consecutive lines joined into texts of at least `at_least` characters (e-mail and article lengths)."""
    out, current = [], ""
    for line in lines:
        current = f"{current} {line}" if current else line
        if len(current) >= at_least:
            out.append(current)
            current = ""
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=10.0, help="MB of text per shape")
    ap.add_argument("--tokenizer", default=None, help="a tokenizer dir (default: the embedded model's)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "tokenizer_speed.json"))
    a = ap.parse_args()
    import transformers

    if int(transformers.__version__.split(".")[0]) >= 5:
        raise SystemExit("run with transformers 4.57 for the SentencePiece reference: PYTHONPATH=.tf4 python ...")
    lines, source = load_lines(a.mb)
    tok_dir = Path(a.tokenizer) if a.tokenizer else ROOT / "src" / "albert" / "models" / "albert-small-en"
    if not (tok_dir / "spiece.model").is_file():
        tok_dir = Path("/tmp/bench_tokenizer")
        if not (tok_dir / "spiece.model").is_file():
            train_tokenizer([FIXTURE], tok_dir, vocab_size=8000, progress=False)
    ours = AlbertTokenizer.from_pretrained(tok_dir)
    slow = transformers.AlbertTokenizer.from_pretrained(str(tok_dir))
    fast = transformers.AlbertTokenizerFast.from_pretrained(str(tok_dir))
    contenders = {"ours": ours, "transformers_fast": fast, "transformers_slow": slow}
    shapes = {"short_lines": (lines, 1000), "long_texts": (long_texts(lines), 256)}
    result: dict = {"benchmark": "tokenizer_speed", "source": source, "tokenizer": str(tok_dir),
                    "threads": torch.get_num_threads(), "machine": cpu_description(),
                    "transformers_version": transformers.__version__, "shapes": {}}
    for shape, (texts, batch) in shapes.items():
        size_mb = sum(len(x.encode()) for x in texts) / 1e6
        batches = [texts[i:i + batch] for i in range(0, len(texts), batch)]
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
        result["shapes"][shape] = {
            "mb": round(size_mb, 2), "texts": len(texts), "batch": batch,
            "mean_chars": round(sum(map(len, texts)) / len(texts)),
            "mb_per_s": {k: round(v, 3) for k, v in mbs.items()},
            "seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
            "ratio_ours_vs_fast": round(mbs["ours"] / mbs["transformers_fast"], 2),
            "ratio_ours_vs_slow": round(mbs["ours"] / mbs["transformers_slow"], 2),
            "texts_differing_from_slow": {k: sum(x != y for x, y in zip(outputs[k], outputs["transformers_slow"]))
                                          for k in ("ours", "transformers_fast")},
        }
        print(shape, json.dumps({k: v for k, v in result["shapes"][shape].items() if k != "seconds"}), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
