"""Simple non-neural baselines on the six labelled tasks, scored with the same metrics as fine-tuning.

    python bench/task_baselines.py [--tasks ../shared/data/tasks] [--out bench/results/task_baselines.json]

What each baseline is (chosen to be the usual cheap reference for the task shape):
- single-sentence / pair classification: TF-IDF (word 1–2-grams) + logistic regression; for pairs the
  features are |a − b| and a ⊙ b of the two TF-IDF vectors plus their cosine.
- token tagging: each word's most frequent tag in train (unknown words → "O"), span F1.
- extractive QA: the context word most similar to the question (character 3-gram TF-IDF cosine).
- multiple choice: the option most similar to the article + question (character 3-gram TF-IDF cosine).
Needs scikit-learn (a test extra).
"""

from __future__ import annotations

import argparse
import collections
import json
import lzma
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from albert.tasks import metrics

ROOT = Path(__file__).resolve().parents[1]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        return [json.loads(line) for line in f if line.strip()]


def classify(train: list[dict[str, Any]], dev: list[dict[str, Any]], labels: list[str], pair: bool) -> dict[str, float]:
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    if pair:
        vec.fit([r["sentence1"] for r in train] + [r["sentence2"] for r in train])

        def features(rows: list[dict[str, Any]]) -> Any:
            a = vec.transform([r["sentence1"] for r in rows])
            b = vec.transform([r["sentence2"] for r in rows])
            cosine = csr_matrix(np.asarray(a.multiply(b).sum(axis=1)))
            return hstack([abs(a - b), a.multiply(b), cosine]).tocsr()
        x_train, x_dev = features(train), features(dev)
    else:
        x_train = vec.fit_transform([r["text"] for r in train])
        x_dev = vec.transform([r["text"] for r in dev])
    index = {label: i for i, label in enumerate(labels)}
    # labels come as names or as their index
    y_train = [r["label"] if isinstance(r["label"], int) else index[r["label"]] for r in train]
    y_dev = [r["label"] if isinstance(r["label"], int) else index[r["label"]] for r in dev]
    clf = LogisticRegression(C=10.0, max_iter=2000).fit(x_train, y_train)
    pred = clf.predict(x_dev).tolist()
    out = {"accuracy": metrics.accuracy(pred, y_dev)}
    out["f1" if len(labels) == 2 else "macro_f1"] = (metrics.f1_binary(pred, y_dev) if len(labels) == 2
                                                      else metrics.f1_macro(pred, y_dev))
    return out


def tag(train: list[dict[str, Any]], dev: list[dict[str, Any]]) -> dict[str, float]:
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for r in train:
        for word, t in zip(r["tokens"], r["tags"]):
            counts[word.lower()][t] += 1
    # A word's most frequent tag; the B-/I- prefix is fixed up so that a predicted span starts with B-.
    preds = []
    for r in dev:
        seq = []
        for word in r["tokens"]:
            best = counts[word.lower()].most_common(1)[0][0] if word.lower() in counts else "O"
            if best.startswith("I-") and (not seq or seq[-1][2:] != best[2:]):
                best = "B-" + best[2:]
            seq.append(best)
        preds.append(seq)
    scores = metrics.span_f1(preds, [r["tags"] for r in dev])
    token_acc = float(np.mean([p == g for ps, r in zip(preds, dev) for p, g in zip(ps, r["tags"])]))
    return {**scores, "token_accuracy": token_acc}


def _char_vectorizer(texts: list[str]) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 3), sublinear_tf=True).fit(texts)


def answer(train: list[dict[str, Any]], dev: list[dict[str, Any]]) -> dict[str, float]:
    vec = _char_vectorizer([r["context"] for r in train] + [r["question"] for r in train])
    preds: dict[str, str] = {}
    for r in dev:
        words = re.findall(r"[\w'-]+", r["context"])
        q = vec.transform([r["question"].removeprefix("Which word means: ")])
        sims = (vec.transform(words) @ q.T).toarray().ravel()
        preds[r["id"]] = words[int(np.argmax(sims))] if words else ""
    return metrics.squad_scores(preds, {r["id"]: r["answers"]["text"] for r in dev})


def choose(train: list[dict[str, Any]], dev: list[dict[str, Any]]) -> dict[str, float]:
    vec = _char_vectorizer([r["article"] + " " + r["question"] for r in train])
    pred = []
    for r in dev:
        sims = (vec.transform(r["options"]) @ vec.transform([r["article"] + " " + r["question"]]).T).toarray()
        pred.append(int(np.argmax(sims.ravel())))
    return {"accuracy": metrics.accuracy(pred, [r["label"] for r in dev]), "chance": 1.0 / len(dev[0]["options"])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", default=str(ROOT.parent / "shared" / "data" / "tasks"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "task_baselines.json"))
    a = ap.parse_args()
    results: dict[str, Any] = {}
    for task_dir in sorted(Path(a.tasks).iterdir()):
        meta = json.loads((task_dir / "meta.json").read_text())
        train, dev = read_jsonl(task_dir / "train.jsonl.xz"), read_jsonl(task_dir / "dev.jsonl")
        t = time.perf_counter()
        kind = meta["kind"]
        if kind.endswith("classification") and kind != "token_classification_bio":
            scores, method = classify(train, dev, meta["labels"], pair=kind.startswith("sentence_pair")), "tfidf+lr"
        elif kind == "token_classification_bio":
            scores, method = tag(train, dev), "most-frequent-tag"
        elif kind.startswith("extractive_qa"):
            scores, method = answer(train, dev), "char-3gram-similarity"
        else:
            scores, method = choose(train, dev), "char-3gram-similarity"
        results[task_dir.name] = {"kind": kind, "baseline": method, "dev": scores, "train_examples": len(train),
                                  "dev_examples": len(dev), "seconds": round(time.perf_counter() - t, 1)}
        print(task_dir.name, method, {k: round(v, 4) for k, v in scores.items()})
    Path(a.out).write_text(json.dumps(results, indent=1) + "\n")
    print("wrote", a.out)


if __name__ == "__main__":
    main()
