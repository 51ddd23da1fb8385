"""Metrics against values worked out by hand and against scikit-learn / the official scripts' logic."""

from __future__ import annotations

import math

import pytest

from albert.tasks.metrics import (
    accuracy,
    bio_spans,
    f1_binary,
    matthews_corrcoef,
    normalize_answer,
    pearson,
    span_f1,
    spearman,
    squad_scores,
    squad_v2_best_threshold,
    token_f1,
)


def test_classification_by_hand() -> None:
    preds, labels = [1, 0, 1, 1, 0, 0], [1, 0, 0, 1, 1, 0]
    assert accuracy(preds, labels) == 4 / 6
    # tp 2, fp 1, fn 1 → F1 = 4/6
    assert f1_binary(preds, labels) == pytest.approx(2 / 3)
    # MCC = (tp*tn - fp*fn) / sqrt(...) = (2*2 - 1*1) / sqrt(3*3*3*3) = 3/9
    assert matthews_corrcoef(preds, labels) == pytest.approx(1 / 3)
    assert matthews_corrcoef([1, 1, 1], [1, 0, 1]) == 0.0  # undefined → 0, as scikit-learn


def test_against_sklearn() -> None:
    import random

    import sklearn.metrics as sk

    rng = random.Random(0)
    y = [rng.randrange(3) for _ in range(200)]
    p = [v if rng.random() < 0.6 else rng.randrange(3) for v in y]
    assert matthews_corrcoef(p, y) == pytest.approx(sk.matthews_corrcoef(y, p))
    yb, pb = [v % 2 for v in y], [v % 2 for v in p]
    assert f1_binary(pb, yb) == pytest.approx(sk.f1_score(yb, pb))


def test_correlations_by_hand() -> None:
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # ranks with ties: x → [1, 2.5, 2.5, 4]; y → [1, 2, 3, 4]
    r = pearson([1, 2.5, 2.5, 4], [1, 2, 3, 4])
    assert spearman([10, 20, 20, 30], [1, 2, 3, 4]) == pytest.approx(r)
    assert spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)
    assert math.isclose(pearson([1, 1, 1], [1, 2, 3]), 0.0)


def test_bio_spans_conlleval_semantics() -> None:
    assert bio_spans(["B-PER", "I-PER", "O", "B-LOC"]) == {("PER", 0, 1), ("LOC", 3, 3)}
    assert bio_spans(["I-PER", "I-PER", "O"]) == {("PER", 0, 1)}  # I- after O starts a span
    assert bio_spans(["B-PER", "I-LOC"]) == {("PER", 0, 0), ("LOC", 1, 1)}  # type change
    assert bio_spans(["B-PER", "B-PER"]) == {("PER", 0, 0), ("PER", 1, 1)}
    assert bio_spans(["S-X", "B-Y", "E-Y", "O"]) == {("X", 0, 0), ("Y", 1, 2)}
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "B-ORG"]]
    # pred spans: PER(0,1) ✓, ORG(0,0) ✓, ORG(1,1) ✗ → p = 2/3; gold 3 → r = 2/3
    scores = span_f1(pred, gold)
    assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 / 3)


def test_squad_normalisation_and_scores_by_hand() -> None:
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert normalize_answer("an apple a day") == "apple day"
    assert token_f1("the cat sat", "a cat sat down") == pytest.approx(2 * (1 * 2 / 3) / (1 + 2 / 3))
    preds = {"q1": "Denver Broncos", "q2": "the cat", "q3": "", "q4": "something"}
    golds = {"q1": ["Denver Broncos", "Broncos"], "q2": ["a dog", "cat"], "q3": [], "q4": []}
    s = squad_scores(preds, golds)
    # EM: q1 1, q2 1 ("cat" == "cat"), q3 1 (no answer, empty prediction), q4 0 → 75%
    assert s["exact"] == pytest.approx(75.0) and s["f1"] == pytest.approx(75.0)
    # v2.0's split: the answered (q1, q2: both right) and the unanswerable (q3 right, q4 answered: wrong) apart
    assert (s["HasAns_exact"], s["HasAns_total"], s["NoAns_exact"], s["NoAns_total"]) == (100.0, 2.0, 50.0, 2.0)
    assert "HasAns_exact" not in squad_scores({"q1": "Broncos"}, {"q1": ["Broncos"]})  # (v1.1: answered only)


def test_squad_v2_best_threshold_by_hand() -> None:
    preds = {"a": "x", "b": "y", "c": "z"}
    golds = {"a": ["x"], "b": [], "c": ["z"]}
    na = {"a": 0.1, "b": 0.5, "c": 0.9}
    # thresholds sweep: start 1 (b right by abstaining); +a → 2; +b (answering b is wrong) → 1; +c → 2
    out = squad_v2_best_threshold(preds, na, golds)
    assert out["best_exact"] == pytest.approx(200 / 3) and out["best_exact_thresh"] == 0.1
