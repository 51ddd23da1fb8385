"""What a fine-tuned classifier starts from: a logistic regression on each of a model's three sentence features — the
mean of the last hidden states (what `albert embed` gives), the last [CLS] state, and the [CLS] pooler's output (what
`AlbertForSequenceClassification` and multiple choice read) — on frozen features, the same rows and classifier as
bench/frozen_vectors.py.

    python bench/pooler_probe.py --model albert-small-en-embed --model albert-small-en [--only TASK ...]

A sentence-vector student distilled through its mean vector never trains its pooler; this shows whether the classifier
head of a fine-tuning starts from features that separate the labels. Results: bench/results/pooler_probe.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from frozen_vectors import ROOT, _accuracy, _rows

RESULTS = ROOT / "bench" / "results" / "pooler_probe.json"
TASKS = ("fine_foods_sentiment", "bible_paraphrase", "wordnet_supersense", "wordnet_cloze_mc")
FEATURES = ("mean", "cls", "pooler")


def features_of(model_name: str, max_length: int = 128) -> Any:
    """texts → {feature: (n, H) array}, fp32, batches of 64."""
    import albert
    from albert.modeling.backbone import pool_hidden_states

    model = albert.AlbertModel.from_pretrained(model_name).float().eval()
    tokenizer = albert.AlbertTokenizer.from_pretrained(model_name)

    def encode(texts: list[str]) -> dict[str, np.ndarray]:
        out: dict[str, list[np.ndarray]] = {f: [] for f in FEATURES}
        for start in range(0, len(texts), 64):
            enc = tokenizer(texts[start:start + 64], truncation=True, max_length=max_length, padding=True,
                            return_tensors="pt")
            with torch.inference_mode():
                o = model(**enc)
            out["mean"].append(pool_hidden_states(o.last_hidden_state, enc["attention_mask"]).numpy())
            out["cls"].append(o.last_hidden_state[:, 0].numpy())
            out["pooler"].append(o.pooler_output.numpy())
        return {f: np.concatenate(v) for f, v in out.items()}
    return encode


def _cached(encode: Any) -> Any:
    """kind → texts → that feature of the texts, each list of texts encoded once for all three kinds."""
    cache: dict[tuple[int, str], dict[str, np.ndarray]] = {}

    def feature(kind: str) -> Any:
        def embed(texts: list[str]) -> np.ndarray:
            key = (len(texts), texts[0])  # _accuracy asks for the training rows' texts, then the dev rows'
            if key not in cache:
                cache[key] = encode(texts)
            return cache[key][kind]
        return embed
    return feature


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="an albert model name or directory (repeatable)")
    ap.add_argument("--tasks", default=str(ROOT.parent / "shared" / "data" / "tasks"))
    ap.add_argument("--only", nargs="*", default=list(TASKS), choices=TASKS, help="the tasks run (default all)")
    ap.add_argument("--train", type=int, default=3000)
    ap.add_argument("--dev", type=int, default=1000)
    ap.add_argument("--out", default=str(RESULTS))
    a = ap.parse_args()
    from albert.runtime.kernels import cpu_description

    results: dict[str, Any] = {"machine": cpu_description(), "train_rows": a.train, "dev_rows": a.dev,
                               "classifier": "LogisticRegression(C=1, lbfgs, max_iter=2000), raw features",
                               "tasks": {}}
    for task in a.only:
        train = _rows(Path(a.tasks) / task / "train.jsonl.xz", a.train)
        dev = _rows(Path(a.tasks) / task / "dev.jsonl", a.dev)
        if task in ("wordnet_supersense", "fine_foods_sentiment"):  # label names → ids, as frozen_vectors.py does
            names = sorted({r["label"] for r in train + dev})
            for r in train + dev:
                r["label"] = names.index(r["label"]) if isinstance(r["label"], str) else r["label"]
        row: dict[str, Any] = {}
        for name in a.model:
            feature = _cached(features_of(name))
            row[name] = {kind: round(100 * _accuracy(task, train, dev, feature(kind)), 2) for kind in FEATURES}
        print(task, json.dumps(row), flush=True)
        results["tasks"][task] = row
    Path(a.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
