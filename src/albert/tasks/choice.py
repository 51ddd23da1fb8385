"""Multiple choice (RACE shape): an article, a question, C options, the index of the right one.

Each option becomes one sequence `[CLS] article [SEP] question+option [SEP]`; when the question has a
blank (`_`) the option fills it, else it follows the question (as the original RACE runner does).
The article is truncated first. Rows: JSONL/Parquet {article, question, options, label (index or
letter)}, or RACE's JSON files ({article, questions, options, answers}).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from albert.errors import DataError, InputError
from albert.io.files import base_suffix, expect, field_of, iter_records, read_json
from albert.modeling.early_exit import pabee_loss
from albert.tasks import metrics
from albert.tasks.base import Featurizer, PassCounts, with_passes
from albert.tokenization.tokenizer import AlbertTokenizer


@dataclass
class Question:
    article: str
    question: str
    options: list[str]
    label: int | None
    where: str


def _label(value: Any, n_options: int, where: str) -> int:
    if isinstance(value, str) and len(value) == 1 and value.upper() in "ABCDEFGH":
        value = "ABCDEFGH".index(value.upper())
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < n_options:
        raise DataError(f"{where}: label {value!r} is not an option index (0..{n_options - 1}) or letter")
    return value


def _read_race(path: Path, need_labels: bool) -> list[Question]:
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise DataError(f"{path}: a RACE file is one object {{article, questions, options, answers}}, got "
                        f"{'a list' if isinstance(doc, list) else type(doc).__name__}")
    article = field_of(doc, "article", str, str(path))
    questions = field_of(doc, "questions", list, str(path))
    options = field_of(doc, "options", list, str(path))
    answers = field_of(doc, "answers", list, str(path), default=None)
    if len(options) != len(questions):
        raise DataError(f"{path}: {len(questions)} questions but {len(options)} option lists")
    if answers is None and need_labels:
        raise DataError(f"{path}: no 'answers'")
    if answers is not None and len(answers) != len(questions):
        raise DataError(f"{path}: {len(questions)} questions but {len(answers)} answers")
    out = []
    for i, q in enumerate(questions):
        where = f"{path}: questions[{i}]"
        expect(q, str, where)
        opts = expect(options[i], list, f"{path}: options[{i}]")
        if len(opts) < 2 or not all(isinstance(o, str) for o in opts):
            raise DataError(f"{path}: options[{i}] must be a list of at least two strings")
        label = _label(answers[i], len(opts), f"{path}: answers[{i}]") if answers is not None else None
        out.append(Question(article, q, opts, label, where))
    return out


def read_questions(path: str | Path, need_labels: bool = True) -> list[Question]:
    path = Path(path)
    out: list[Question] = []
    if base_suffix(path) == ".json":  # RACE: one article with several questions per file
        return _read_race(path, need_labels)
    for n, row in iter_records(path):
        where = f"{path}:{n}"
        options = row.get("options")
        if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) for o in options):
            raise DataError(f"{where}: 'options' must be a list of at least two strings")
        if not isinstance(row.get("article"), str) or not isinstance(row.get("question"), str):
            raise DataError(f"{where}: 'article' and 'question' must be text")
        raw = row.get("label", row.get("answer"))
        if raw is None and need_labels:
            raise DataError(f"{where}: no 'label'")
        label = None if raw is None else _label(raw, len(options), where)
        out.append(Question(row["article"], row["question"], options, label, where))
    if out and len({len(q.options) for q in out}) > 1:
        raise DataError(f"{path}: every question must have the same number of options")
    return out


class ChoiceFeatures(Featurizer):
    """One row per option; the head scores the options of a question against each other."""

    def __init__(self, tokenizer: AlbertTokenizer, max_seq_length: int, eval_batch_size: int = 16) -> None:
        super().__init__(tokenizer, max_seq_length, eval_batch_size)

    def featurize(self, questions: list[Question]) -> list[dict[str, Any]]:
        firsts, seconds = [], []
        for q in questions:
            for option in q.options:
                firsts.append(q.article)
                seconds.append(q.question.replace("_", option) if "_" in q.question else f"{q.question} {option}")
        try:
            enc = self.tokenizer(firsts, seconds, truncation="only_first", max_length=self.max_seq_length)
        except InputError:  # a question+option longer than max_length: truncate both
            enc = self.tokenizer(firsts, seconds, truncation="longest_first", max_length=self.max_seq_length)
        feats, k = [], 0
        for q in questions:
            C = len(q.options)
            feats.append({"input_ids": enc["input_ids"][k:k + C], "token_type_ids": enc["token_type_ids"][k:k + C],
                          "label": q.label})
            k += C
        return feats

    def collate(self, feats: list[dict[str, Any]], with_labels: bool = True) -> dict[str, Tensor]:
        C = len(feats[0]["input_ids"])
        flat = [{"input_ids": f["input_ids"][c], "token_type_ids": f["token_type_ids"][c]} for f in feats
                for c in range(C)]
        rows = self.encode_rows(flat)
        batch = {k: v.view(len(feats), C, -1) for k, v in rows.items()}  # (B, C, T)
        if with_labels:
            batch["labels"] = torch.tensor([int(f["label"]) for f in feats])
        return batch

    def loss(self, model: nn.Module, batch: dict[str, Tensor], norm: Tensor) -> tuple[Tensor, Tensor]:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    token_type_ids=batch["token_type_ids"])
        logits = out.logits.float()  # (B, C)
        loss_sum = pabee_loss(out.exit_logits, out.logits,
                              lambda z: F.cross_entropy(z.float(), batch["labels"], reduction="sum"))
        correct = (logits.argmax(-1) == batch["labels"]).sum()
        return (loss_sum / norm[0]).float(), self.stats(loss_sum, float(len(logits)), correct)

    def predict_logits(self, model: nn.Module, questions: list[Question], device: torch.device,
                       dtype: torch.dtype | None = None) -> tuple[list[list[float]], list[int] | None]:
        """Each question's option logits, and the passes each ran where the model exited early (else None)."""
        out: list[list[float]] = [[] for _ in questions]
        passes = PassCounts(len(questions))
        for idx, output in self.batched_outputs(model, self.featurize(questions), device, dtype):
            for i, row in zip(idx, output.logits.float().cpu().tolist()):
                out[i] = row
            passes.add(idx, output)
        return out, passes.values()

    def score(self, logits: list[list[float]], questions: list[Question]) -> dict[str, float]:
        preds = [max(range(len(row)), key=row.__getitem__) for row in logits]
        return {"accuracy": metrics.accuracy(preds, [int(q.label or 0) for q in questions])}

    def score_examples(self, model: nn.Module, examples: list[Question], device: torch.device,
                       dtype: torch.dtype | None = None) -> dict[str, float]:
        logits, passes = self.predict_logits(model, examples, device, dtype)
        return {**self.score(logits, examples), **PassCounts.summary(passes)}

    def predict_rows(self, model: nn.Module, examples: list[Question], device: torch.device,
                     dtype: torch.dtype | None = None) -> list[dict[str, Any]]:
        out = []
        logits, passes = self.predict_logits(model, examples, device, dtype)
        for i, row in enumerate(logits):
            probs = torch.tensor(row).softmax(-1)
            out.append(with_passes({"label": int(probs.argmax()), "scores": [round(float(p), 6) for p in probs]},
                                   None if passes is None else passes[i]))
        return out
