"""A logistic regression on frozen sentence vectors, on the labelled tasks that sentence vectors can answer: ours
(`albert embed`'s default model) against the distillation's teacher (all-MiniLM-L6-v2 through
sentence-transformers), the same rows, the same classifier.

    python bench/frozen_vectors.py --teacher DIR [--model M ...] [--teacher_layers 0,1,3,5] [--only TASK ...]
        [--tasks ../shared/data/tasks] [--train 4000] [--dev 2000]

Features: a text's vector; a pair's [u, v, |u - v|, u * v] (InferSent's, as sentence-transformers trains pair
classifiers); a cloze question's options each as the vector of the question with the option written into its blank
beside the article's vector, scored by one logistic regression (correct option or not) and the best-scored option
taken. scikit-learn's LogisticRegression (lbfgs, C=1, up to 2,000 iterations) on --train training rows, scored on --dev
dev rows, both drawn with a fixed seed (the files are ordered, some by label). Token tagging and extractive QA
answer per token, not per text: not run.
Results: bench/results/frozen_vectors.json.
"""

from __future__ import annotations

import argparse
import json
import lzma
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "frozen_vectors.json"
TASKS = ("fine_foods_sentiment", "bible_paraphrase", "wordnet_supersense", "wordnet_cloze_mc")
NOT_RUN = {"wordnet_qa": "extractive QA: an answer span per question, not a label per text",
           "wordnet_sst_tagging": "token tagging: a label per word, not per text"}


def _rows(path: Path, n: int) -> list[dict[str, Any]]:
    """n rows drawn with a fixed seed (the files are ordered, some by label: their first rows hold few labels)."""
    import random

    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        lines = f.readlines()
    picked = sorted(random.Random(0).sample(range(len(lines)), min(n, len(lines))))
    return [json.loads(lines[i]) for i in picked]


def _texts(task: str, rows: list[dict[str, Any]]) -> list[str]:
    """Every text the task's features need, in a fixed order (_features reads them back in the same order)."""
    if task == "bible_paraphrase":
        return [t for r in rows for t in (r["sentence1"], r["sentence2"])]
    if task == "wordnet_cloze_mc":
        return [t for r in rows for t in [r["article"], *(r["question"].replace("_", o) for o in r["options"])]]
    return [r["text"] for r in rows]


def _features(task: str, rows: list[dict[str, Any]], vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if task == "bible_paraphrase":
        u, v = vectors[0::2], vectors[1::2]
        return np.hstack([u, v, np.abs(u - v), u * v]), np.array([r["label"] for r in rows])
    if task == "wordnet_cloze_mc":
        feats, labels, k = [], [], 0
        for r in rows:
            article, options = vectors[k], vectors[k + 1:k + 1 + len(r["options"])]
            k += 1 + len(r["options"])
            for j, o in enumerate(options):
                feats.append(np.hstack([article, o, np.abs(article - o), article * o]))
                labels.append(int(j == int(r["label"])))
        return np.array(feats), np.array(labels)
    return vectors, np.array([r["label"] for r in rows])


def _accuracy(task: str, train: list[dict[str, Any]], dev: list[dict[str, Any]], embed: Any) -> float:
    from sklearn.linear_model import LogisticRegression

    x, y = _features(task, train, embed(_texts(task, train)))
    classifier = LogisticRegression(C=1.0, max_iter=2000).fit(x, y)
    dx, dy = _features(task, dev, embed(_texts(task, dev)))
    if task != "wordnet_cloze_mc":
        return float((classifier.predict(dx) == dy).mean())
    scores, right, k = classifier.decision_function(dx), 0, 0
    for r in dev:
        n = len(r["options"])
        right += int(np.argmax(scores[k:k + n]) == int(r["label"]))
        k += n
    return right / len(dev)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", required=True, help="the teacher's sentence-transformers directory")
    ap.add_argument("--model", nargs="+", default=["albert-small-en-embed"], help="albert models")
    ap.add_argument("--teacher_layers", default=None, help="also the teacher cut to these of its layers, e.g. 0,1,3,5 "
                    "(on its own tokenizer, through sentence-transformers)")
    ap.add_argument("--only", nargs="+", choices=TASKS, default=list(TASKS), help="the tasks to run")
    ap.add_argument("--tasks", default=str(ROOT.parent / "shared" / "data" / "tasks"))
    ap.add_argument("--train", type=int, default=4000)
    ap.add_argument("--dev", type=int, default=2000)
    ap.add_argument("--out", default=str(RESULTS), help="the JSON written")
    a = ap.parse_args()
    from sentence_transformers import SentenceTransformer

    import albert
    from albert.runtime.kernels import cpu_description

    def albert_embed(model: str) -> Any:
        pipe = albert.pipeline("feature-extraction", model=model)
        return lambda texts: np.array(pipe(texts, normalize=True), dtype=np.float32)

    def sentence_transformers(layers: list[int] | None) -> Any:
        model = SentenceTransformer(a.teacher, device="cpu")
        if layers is not None:
            import torch

            encoder = model[0].auto_model.encoder
            encoder.layer = torch.nn.ModuleList([encoder.layer[i] for i in layers])
        return lambda texts: model.encode(texts, batch_size=64, normalize_embeddings=True)

    contenders = {f"albert embed ({m})": albert_embed(m) for m in a.model}
    contenders["teacher (all-MiniLM-L6-v2, sentence-transformers)"] = sentence_transformers(None)
    if a.teacher_layers:
        layers = [int(x) for x in a.teacher_layers.split(",")]
        contenders[f"the teacher's layers {a.teacher_layers} (sentence-transformers)"] = sentence_transformers(layers)
    results: dict[str, Any] = {"machine": cpu_description(), "train_rows": a.train, "dev_rows": a.dev,
                               "classifier": "LogisticRegression(C=1, lbfgs, max_iter=2000)", "tasks": {},
                               "not_run": NOT_RUN}
    for task in a.only:
        train = _rows(Path(a.tasks) / task / "train.jsonl.xz", a.train)
        dev = _rows(Path(a.tasks) / task / "dev.jsonl", a.dev)
        if task in ("wordnet_supersense", "fine_foods_sentiment"):  # label names → ids, as the task lists them
            names = sorted({r["label"] for r in train + dev})
            for r in train + dev:
                r["label"] = names.index(r["label"]) if isinstance(r["label"], str) else r["label"]
        row: dict[str, Any] = {"train": len(train), "dev": len(dev)}
        for name, embed in contenders.items():
            started = time.perf_counter()
            row[name] = round(100 * _accuracy(task, train, dev, embed), 2)
            row[f"{name} seconds"] = round(time.perf_counter() - started, 1)
        print(task, json.dumps(row), flush=True)
        results["tasks"][task] = row
    Path(a.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
