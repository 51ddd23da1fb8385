"""Evaluation metrics, computed as the official scripts compute them.

accuracy, F1, Matthews correlation (GLUE/CoLA), Pearson and Spearman (STS-B), span-level F1 over
BIO tags (seqeval's default, CoNLL semantics), and SQuAD v1.1 / v2.0 exact match and F1 with the
official answer normalisation and v2.0's best no-answer threshold.
"""

from __future__ import annotations

import collections
import math
import re
import string
from collections.abc import Sequence

import numpy as np


# ----- classification and regression -----
def accuracy(preds: Sequence[int], labels: Sequence[int]) -> float:
    if len(preds) != len(labels) or not labels:
        raise ValueError("accuracy needs as many predictions as labels, at least one")
    return sum(int(p == y) for p, y in zip(preds, labels)) / len(labels)


def f1_binary(preds: Sequence[int], labels: Sequence[int], positive: int = 1) -> float:
    tp = sum(1 for p, y in zip(preds, labels) if p == positive and y == positive)
    fp = sum(1 for p, y in zip(preds, labels) if p == positive and y != positive)
    fn = sum(1 for p, y in zip(preds, labels) if p != positive and y == positive)
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def f1_macro(preds: Sequence[int], labels: Sequence[int]) -> float:
    classes = sorted(set(labels) | set(preds))
    return float(np.mean([f1_binary(preds, labels, c) for c in classes]))


def matthews_corrcoef(preds: Sequence[int], labels: Sequence[int]) -> float:
    """Multi-class MCC (Gorodkin), equal to scikit-learn's; 0 when undefined."""
    classes = sorted(set(labels) | set(preds))
    index = {c: i for i, c in enumerate(classes)}
    C = np.zeros((len(classes), len(classes)), dtype=np.float64)
    for p, y in zip(preds, labels):
        C[index[y], index[p]] += 1
    t, p = C.sum(axis=1), C.sum(axis=0)
    c, s = np.trace(C), C.sum()
    cov_yp = c * s - t @ p
    cov_pp = s * s - p @ p
    cov_yy = s * s - t @ t
    if cov_pp == 0 or cov_yy == 0:
        return 0.0
    return float(cov_yp / math.sqrt(cov_yy * cov_pp))


def pearson(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    a, b = a - a.mean(), b - b.mean()
    denom = math.sqrt(float(a @ a) * float(b @ b))
    return 0.0 if denom == 0 else float(a @ b / denom)


def _ranks(x: Sequence[float]) -> np.ndarray:
    """Average ranks (ties share the mean rank), as scipy.stats.rankdata."""
    a = np.asarray(x, dtype=np.float64)
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(len(a), dtype=np.float64)
    sorted_a = a[order]
    i = 0
    while i < len(a):
        j = i
        while j + 1 < len(a) and sorted_a[j + 1] == sorted_a[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    return pearson(_ranks(x), _ranks(y))


# ----- BIO span F1 (seqeval default semantics) -----
def _chunk_ends(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    return (prev_tag in ("E", "S") or (prev_tag in ("B", "I") and tag in ("B", "S", "O"))
            or (prev_tag != "O" and prev_type != type_))


def _chunk_starts(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    return (tag in ("B", "S") or (prev_tag in ("E", "S", "O") and tag in ("E", "I"))
            or (tag != "O" and prev_type != type_))


def bio_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """(type, start, end) spans under conlleval's rules (seqeval's default): an I- after O or after
    another type starts a new span. Accepts BIO, IOB1 and BIOES tags."""
    spans = set()
    prev_tag, prev_type, start = "O", "", 0
    for i, chunk in enumerate([*tags, "O"]):
        tag, _, type_ = chunk.partition("-")
        tag = tag if tag in ("B", "I", "E", "S") else "O"
        if _chunk_ends(prev_tag, tag, prev_type, type_):
            spans.add((prev_type, start, i - 1))
        if _chunk_starts(prev_tag, tag, prev_type, type_):
            start = i
        prev_tag, prev_type = tag, type_
    return spans


def span_f1(pred_tags: Sequence[Sequence[str]], gold_tags: Sequence[Sequence[str]]) -> dict[str, float]:
    tp = n_pred = n_gold = 0
    for p, g in zip(pred_tags, gold_tags):
        ps, gs = bio_spans(p), bio_spans(g)
        tp += len(ps & gs)
        n_pred += len(ps)
        n_gold += len(gs)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


# ----- SQuAD -----
def normalize_answer(s: str) -> str:
    """The official scripts' normalisation: lowercase, drop punctuation and articles, squeeze spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    p, g = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not p or not g:  # v2.0: both empty (no answer) is a match
        return float(p == g)
    common = collections.Counter(p) & collections.Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: dict[str, str], golds: dict[str, list[str]]) -> dict[str, float]:
    """EM and F1 (percent) as evaluate-v1.1/v2.0: each question's best score over its gold answers.
    An unanswerable question's gold list is empty and matches only the empty prediction. Where both kinds of
    question are present, v2.0's HasAns_* and NoAns_* scores too (the answered and the unanswerable apart)."""
    scores: dict[str, dict[str, tuple[float, float]]] = {"HasAns": {}, "NoAns": {}}
    for qid, answers in golds.items():
        if qid not in predictions:
            raise ValueError(f"no prediction for question {qid!r}")
        answers = [a for a in answers if normalize_answer(a)]
        kind = "HasAns" if answers else "NoAns"
        answers = answers or [""]
        scores[kind][qid] = (max(exact_match(predictions[qid], a) for a in answers),
                             max(token_f1(predictions[qid], a) for a in answers))
    out = _percent(scores["HasAns"] | scores["NoAns"], "")
    if scores["HasAns"] and scores["NoAns"]:
        for kind, of_kind in scores.items():
            out.update(_percent(of_kind, kind + "_"))
    return out


def _percent(scores: dict[str, tuple[float, float]], prefix: str) -> dict[str, float]:
    n = len(scores)
    return {f"{prefix}exact": 100.0 * sum(em for em, _ in scores.values()) / n,
            f"{prefix}f1": 100.0 * sum(f1 for _, f1 in scores.values()) / n, f"{prefix}total": float(n)}


def squad_v2_best_threshold(predictions: dict[str, str], no_answer_probs: dict[str, float],
                            golds: dict[str, list[str]]) -> dict[str, float]:
    """evaluate-v2.0's best_exact / best_f1: the no-answer threshold that maximises each score."""
    out = {}
    for name, score_fn in (("exact", exact_match), ("f1", token_f1)):
        raw = {}
        for qid, answers in golds.items():
            answers = [a for a in answers if normalize_answer(a)] or [""]
            raw[qid] = max(score_fn(predictions[qid], a) for a in answers)
        has_answer = {qid: bool([a for a in golds[qid] if normalize_answer(a)]) for qid in golds}
        # start: predict no answer everywhere
        cur = best = float(sum(1 for q in golds if not has_answer[q]))
        best_thresh = 0.0
        for qid in sorted(golds, key=lambda q: no_answer_probs[q]):
            if has_answer[qid]:
                diff = raw[qid]
            else:
                diff = -1.0 if predictions[qid] else 0.0
            cur += diff
            if cur > best:
                best, best_thresh = cur, no_answer_probs[qid]
        out[f"best_{name}"] = 100.0 * best / len(golds)
        out[f"best_{name}_thresh"] = best_thresh
    return out
