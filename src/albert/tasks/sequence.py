"""Sequence-level tasks: classification (one text or a pair), regression, multi-label and sentence order.

The task object featurizes rows, feeds the one training loop (albert.train.loop) and computes the
task's metrics; the fine-tuned directory records the task in `config.albert_task`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from albert.errors import DataError
from albert.modeling.early_exit import pabee_loss
from albert.tasks import metrics
from albert.tasks.base import Featurizer, PassCounts, with_passes
from albert.tasks.readers import listed_labels, read_rows
from albert.tokenization.tokenizer import AlbertTokenizer

TEXT_FIELDS = [("text", "text_pair"), ("sentence1", "sentence2"), ("sentence", None), ("question", "sentence"),
               ("question1", "question2"), ("premise", "hypothesis"), ("first", "second"), ("text", None)]
# sentence order is a two-class classification whose labels are fixed: SOP's, 0 the text's order and 1 swapped
KINDS = ("classification", "regression", "multi-label", "sentence-order")
ORDER_LABELS = ["in_order", "swapped"]


@dataclass
class Example:
    text: str
    pair: str | None
    label: Any  # int class, float score, or list of class ids
    where: str  # file:line, for error messages


def detect_fields(row: dict[str, Any]) -> tuple[str, str | None]:
    for a, b in TEXT_FIELDS:
        if a in row and (b is None or b in row):
            return a, b
    raise DataError(f"cannot find the text fields in {sorted(row)}; expected one of "
                    + ", ".join(f"{a}+{b}" if b else a for a, b in TEXT_FIELDS))


def read_examples(path: str | Path, kind: str, labels: list[str] | None, label_field: str = "label",
                  fields: tuple[str, str | None] | None = None, tsv_layout: str | None = None,
                  need_labels: bool = True) -> tuple[list[Example], tuple[str, str | None]]:
    """Rows → examples. Class labels may be names (in `labels`) or indices; others are errors."""
    examples: list[Example] = []
    for n, row in read_rows(path, tsv_layout):
        where = f"{path}:{n}"
        if fields is None:
            fields = detect_fields(row)
        a, b = fields
        text, pair = row.get(a), row.get(b) if b else None
        if not isinstance(text, str) or (b is not None and not isinstance(pair, str)):
            raise DataError(f"{where}: field {a!r}{' and ' + repr(b) if b else ''} must be text")
        label = row.get(label_field)
        if label is None:
            if need_labels:
                raise DataError(f"{where}: no {label_field!r}")
        else:
            label = _parse_label(label, kind, labels, where)
        examples.append(Example(text, pair, label, where))
    if not examples:
        raise DataError(f"{path}: no examples")
    assert fields is not None
    return examples, fields


def _parse_label(value: Any, kind: str, labels: list[str] | None, where: str) -> Any:
    if kind == "regression":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise DataError(f"{where}: regression label {value!r} is not a number") from None
    values = value if kind == "multi-label" else [value]
    if kind == "multi-label" and not isinstance(value, list):
        raise DataError(f"{where}: a multi-label row needs a list of labels, got {value!r}")
    ids = []
    assert labels is not None
    for v in values:
        if isinstance(v, str) and v in labels:
            ids.append(labels.index(v))
        elif isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= int(v) < len(labels):
            ids.append(int(v))
        elif isinstance(v, str) and v.lstrip("-").isdigit() and 0 <= int(v) < len(labels) and v not in labels:
            ids.append(int(v))
        else:
            raise DataError(f"{where}: label {v!r} is not in the label set ({', '.join(map(str, labels[:20]))}"
                            f"{', ...' if len(labels) > 20 else ''})")
    return ids if kind == "multi-label" else ids[0]


def label_set(path: str | Path, kind: str, label_field: str = "label", tsv_layout: str | None = None) -> list[str]:
    """Label names: from a meta.json beside the file if it lists them, else sorted from the training rows."""
    listed = listed_labels(path)
    if listed:
        return listed
    seen: set[Any] = set()
    for n, row in read_rows(path, tsv_layout):
        v = row.get(label_field)
        values = v if kind == "multi-label" and isinstance(v, list) else [] if v is None else [v]
        for x in values:
            # a class is a name or an index; a float, list or object as a label is a mistake, not a new class
            if isinstance(x, bool) or not isinstance(x, (str, int, np.integer)):
                what = "a list of labels" if kind == "multi-label" else "a label name or index"
                raise DataError(f"{path}:{n}: {label_field!r} must be {what}, got {_shown(x)}")
        seen.update(values)
    if not seen:
        raise DataError(f"{path}: no {label_field!r} values to learn labels from")
    if all(isinstance(v, (int, np.integer)) or (isinstance(v, str) and v.isdigit()) for v in seen):
        low, top = min(int(v) for v in seen), max(int(v) for v in seen)
        if top >= MAX_CLASSES or low < 0:
            raise DataError(f"{path}: class indices must be in 0..{MAX_CLASSES - 1}, got {low}..{top}")
        return [str(i) for i in range(top + 1)]
    return sorted(str(v) for v in seen)


MAX_CLASSES = 65536


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:30] + "..."


class SequenceFeatures(Featurizer):
    """Rows, loss, predictions and metrics of a sequence head (classification, regression, multi-label)."""

    def __init__(self, kind: str, tokenizer: AlbertTokenizer, num_labels: int, max_seq_length: int,
                 eval_batch_size: int = 64) -> None:
        if kind not in KINDS:
            raise DataError(f"unknown sequence task {kind!r}")
        super().__init__(tokenizer, max_seq_length, eval_batch_size)
        self.kind, self.num_labels = kind, num_labels

    # --- features ---
    def featurize(self, examples: list[Example]) -> list[dict[str, Any]]:
        texts = [e.text for e in examples]
        pairs = [e.pair or "" for e in examples] if examples and examples[0].pair is not None else None
        enc = self.tokenizer(texts, pairs, truncation=True, max_length=self.max_seq_length)
        return [{"input_ids": enc["input_ids"][i], "token_type_ids": enc["token_type_ids"][i],
                 "label": examples[i].label} for i in range(len(examples))]

    def collate(self, feats: list[dict[str, Any]], with_labels: bool = True) -> dict[str, Tensor]:
        batch = self.encode_rows(feats)
        if with_labels:
            if self.kind == "regression":
                batch["labels"] = torch.tensor([float(f["label"]) for f in feats])
            elif self.kind == "multi-label":
                multi = torch.zeros(len(feats), self.num_labels)
                for i, f in enumerate(feats):
                    multi[i, f["label"]] = 1.0
                batch["labels"] = multi
            else:
                batch["labels"] = torch.tensor([int(f["label"]) for f in feats])
        return batch

    def units(self, batch: dict[str, Tensor]) -> float:
        return float(len(batch["input_ids"]) * (self.num_labels if self.kind == "multi-label" else 1))

    def loss(self, model: nn.Module, batch: dict[str, Tensor], norm: Tensor) -> tuple[Tensor, Tensor]:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    token_type_ids=batch["token_type_ids"])
        logits, labels = out.logits.float(), batch["labels"]
        loss_sum = pabee_loss(out.exit_logits, out.logits, lambda z: self._loss_sum(z.float(), labels))
        if self.kind == "regression":
            correct = torch.zeros((), device=logits.device)
        elif self.kind == "multi-label":
            correct = ((logits > 0) == (labels > 0.5)).all(-1).sum()
        else:
            correct = (logits.argmax(-1) == labels).sum()
        return (loss_sum / norm[0]).float(), self.stats(loss_sum, float(len(labels)), correct)

    def _loss_sum(self, logits: Tensor, labels: Tensor) -> Tensor:
        if self.kind == "regression":
            return F.mse_loss(logits.squeeze(-1), labels.float(), reduction="sum")
        if self.kind == "multi-label":
            return F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="sum")
        return F.cross_entropy(logits, labels, reduction="sum")

    def summarize(self, s: dict[str, float]) -> dict[str, float]:
        per = s["loss_sum"] / max(s["count"], 1)
        out = {"loss": per / (self.num_labels if self.kind == "multi-label" else 1)}
        if self.kind != "regression":
            out["acc"] = s["correct"] / max(s["count"], 1)
        return out

    def predict_logits(self, model: nn.Module, examples: list[Example], device: torch.device,
                       dtype: torch.dtype | None = None) -> tuple[np.ndarray, list[int] | None]:
        """Each example's logits, and the passes each ran where the model exited early (else None)."""
        out = np.zeros((len(examples), self.num_labels), dtype=np.float32)
        passes = PassCounts(len(examples))
        for idx, output in self.batched_outputs(model, self.featurize(examples), device, dtype):
            out[idx] = output.logits.float().cpu().numpy()
            passes.add(idx, output)
        return out, passes.values()

    def score(self, logits: np.ndarray, examples: list[Example]) -> dict[str, float]:
        if self.kind == "regression":
            scores, targets = logits[:, 0].tolist(), [float(e.label) for e in examples]
            return {"pearson": metrics.pearson(scores, targets), "spearman": metrics.spearman(scores, targets),
                    "mse": float(np.mean((np.array(scores) - np.array(targets)) ** 2))}
        if self.kind == "multi-label":
            pred_sets = [set(np.flatnonzero(row > 0).tolist()) for row in logits]
            gold_sets = [set(e.label) for e in examples]
            tp = sum(len(p & g) for p, g in zip(pred_sets, gold_sets))
            n_pred, n_gold = sum(map(len, pred_sets)), sum(map(len, gold_sets))
            f1 = 2 * tp / (n_pred + n_gold) if n_pred + n_gold else 0.0
            return {"micro_f1": f1, "exact_match": float(np.mean([p == g for p, g in zip(pred_sets, gold_sets)]))}
        preds: list[int] = logits.argmax(-1).tolist()
        gold = [int(e.label) for e in examples]
        out = {"accuracy": metrics.accuracy(preds, gold), "mcc": metrics.matthews_corrcoef(preds, gold),
               "macro_f1": metrics.f1_macro(preds, gold)}
        if self.num_labels == 2:
            out["f1"] = metrics.f1_binary(preds, gold)
        return out

    def score_examples(self, model: nn.Module, examples: list[Example], device: torch.device,
                       dtype: torch.dtype | None = None) -> dict[str, float]:
        logits, passes = self.predict_logits(model, examples, device, dtype)
        scores = {**self.score(logits, examples), **PassCounts.summary(passes)}
        return {k: v for k, v in scores.items() if not math.isnan(v)}

    def predict_rows(self, model: nn.Module, examples: list[Example], device: torch.device,
                     dtype: torch.dtype | None = None) -> list[dict[str, Any]]:
        """The text-classification output for each example (as `albert classify` gives it): the best label for
        single-label and regression heads, every label ranked for multi-label ones."""
        labels = label_names(model.config)  # type: ignore[arg-type]
        top_k = None if self.kind == "multi-label" else 1
        logits, passes = self.predict_logits(model, examples, device, dtype)
        return [with_passes(classification_output(row, labels, self.kind, top_k), None if passes is None else passes[i])
                for i, row in enumerate(logits)]


def label_names(config: Any) -> list[str]:
    """A classifier's label names in id order (LABEL_i where the config names none)."""
    if config.id2label:
        return [str(config.id2label[i]) for i in range(config.num_labels)]
    return [f"LABEL_{i}" for i in range(config.num_labels)]


def kind_of(config: Any) -> str:
    """classification, regression or multi-label, from a sequence classifier's config."""
    if config.problem_type == "multi_label_classification":
        return "multi-label"
    if config.problem_type == "regression" or config.num_labels == 1:
        return "regression"
    return "classification"


def classification_output(logits: np.ndarray, labels: list[str], kind: str, top_k: int | None = 1) -> Any:
    """One text's answer: {label, score} (top_k 1) or the top_k (None: all) ranked. Scores are probabilities
    (softmax; sigmoid per label for multi-label); a regression head's score is its raw output."""
    if kind == "regression":
        return {"label": labels[0], "score": float(logits[0])}
    z = logits.astype(np.float64)
    probs = 1 / (1 + np.exp(-z)) if kind == "multi-label" else np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    ranked = sorted(((float(p), labels[i]) for i, p in enumerate(probs)), key=lambda x: -x[0])
    top = [{"label": label, "score": p} for p, label in ranked[: top_k or len(ranked)]]
    return top[0] if top_k == 1 else top
