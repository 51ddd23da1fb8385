"""Sentence vectors that find things: find a paragraph among N from its one-line summary.

The pairs are Debian's package descriptions (the one-line summary and the long description's first paragraph,
from apt's Translation-en index, which `apt-get update -o Acquire::Languages=en` fetches): real English, written by
many hands, and in none of the project's corpora. Duplicates (a -dev and a -doc package sharing a paragraph) are
dropped; the N pairs are chosen by a hash of the package name, so every run takes the same ones.

Contenders, in one process, each on the same texts: TF-IDF cosine (scikit-learn, fitted on those texts), a
sentence-transformers directory (the teacher, through sentence-transformers), and albert models through albert's
feature-extraction pipeline (what `albert embed` runs). Each reports recall@1, recall@10, MRR and vectors per
second over all 2N texts (medians of alternating rounds).

    python bench/retrieval.py --teacher DIR --albert albert-small-en [--albert DIR ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from albert.runtime.kernels import cpu_description

INDEX = "/var/lib/apt/lists/*_debian_dists_*_main_i18n_Translation-en*"


def debian_pairs(n: int, min_words: int = 25) -> list[tuple[str, str]]:
    """(summary, paragraph) pairs of Debian packages, `n` of them, always the same ones."""
    files = sorted(glob.glob(INDEX))
    if not files:
        raise SystemExit("no Translation-en index: run apt-get update -o Acquire::Languages=en")
    text = "".join(subprocess.run(["lz4cat", f] if f.endswith(".lz4") else ["cat", f], capture_output=True,
                                  text=True, check=True).stdout for f in files)
    pairs: dict[str, tuple[str, str]] = {}
    seen_paragraphs: set[str] = set()
    seen_summaries: set[str] = set()
    for block in text.split("\n\n"):
        lines = block.splitlines()
        name = next((x.removeprefix("Package: ") for x in lines if x.startswith("Package: ")), None)
        start = next((i for i, x in enumerate(lines) if x.startswith("Description-en: ")), None)
        if name is None or start is None:
            continue
        summary = lines[start].removeprefix("Description-en: ").strip()
        body = []
        for line in lines[start + 1:]:
            if not line.startswith(" ") or line.strip() == ".":
                break
            body.append(line.strip())
        paragraph = " ".join(body)
        if len(paragraph.split()) < min_words or paragraph in seen_paragraphs or summary in seen_summaries:
            continue
        seen_paragraphs.add(paragraph)
        seen_summaries.add(summary)
        pairs[name] = (summary, paragraph)
    chosen = sorted(pairs, key=lambda p: hashlib.sha256(p.encode()).hexdigest())[:n]
    return [pairs[p] for p in chosen]


def scores(queries: np.ndarray, documents: np.ndarray) -> dict[str, float]:
    """Recall@1, recall@10 and MRR of finding document i for query i by cosine similarity."""
    q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    d = documents / np.maximum(np.linalg.norm(documents, axis=1, keepdims=True), 1e-12)
    sims = q @ d.T
    rank = (sims > sims[np.arange(len(q)), np.arange(len(q))][:, None]).sum(1)  # 0: found first
    return {"recall@1": round(float((rank < 1).mean()), 4), "recall@10": round(float((rank < 10).mean()), 4),
            "mrr": round(float((1.0 / (rank + 1)).mean()), 4)}


def embedder(kind: str, where: str, precision: str) -> Any:
    """texts → an (n, d) array, for one contender."""
    if kind == "tfidf":
        from sklearn.feature_extraction.text import TfidfVectorizer

        def tfidf(texts: list[str]) -> np.ndarray:
            return TfidfVectorizer(sublinear_tf=True).fit_transform(texts).toarray()  # fitted on the texts themselves
        return tfidf
    if kind == "sentence-transformers":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(where, device="cpu")
        return lambda texts: model.encode(texts, convert_to_numpy=True)
    import albert

    pipe = albert.pipeline("feature-extraction", model=where, device="cpu", precision=precision)
    return lambda texts: np.array(pipe(texts))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=3000)
    p.add_argument("--teacher", action="append", default=[], help="a sentence-transformers directory (repeatable)")
    p.add_argument("--albert", action="append", default=[], help="an albert model name or directory (repeatable)")
    p.add_argument("--precision", default="auto")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per contender, alternating")
    p.add_argument("--out", default="bench/results/retrieval.json")
    a = p.parse_args()
    pairs = debian_pairs(a.pairs)
    queries, documents = [q for q, _ in pairs], [d for _, d in pairs]
    contenders = [("tfidf", "tfidf", "")] + [(f"st:{t}", "sentence-transformers", t) for t in a.teacher] + \
                 [(f"albert:{m}", "albert", m) for m in a.albert]
    embed = {name: embedder(kind, where, a.precision) for name, kind, where in contenders}
    results: dict[str, dict[str, Any]] = {}
    times: dict[str, list[float]] = {name: [] for name in embed}
    for round_ in range(a.rounds):
        for name, fn in embed.items():
            start = time.perf_counter()
            if name == "tfidf":  # one fit over both sides: a shared vocabulary
                both = fn(queries + documents)
                q, d = both[:len(queries)], both[len(queries):]
            else:
                q, d = fn(queries), fn(documents)
            times[name].append(time.perf_counter() - start)
            if round_ == 0:
                results[name] = scores(q, d)
            print(name, round_, results[name], f"{times[name][-1]:.1f}s", flush=True)
    for name in results:
        results[name]["vectors_per_s"] = round(2 * len(pairs) / statistics.median(times[name]), 1)
    out = {"cpu": cpu_description(), "pairs": len(pairs), "source": "Debian bookworm Translation-en: package "
           "summary → first paragraph of its long description", "precision": a.precision, "rounds": a.rounds,
           "results": results}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
