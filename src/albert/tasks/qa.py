"""Extractive QA (SQuAD v1.1 and v2.0): windows over long contexts, n-best span search, answers mapped
back to the original context through offsets, and v2.0's no-answer decision.

Rows: SQuAD JSON ({data: [{paragraphs: [{context, qas}]}]}) or JSONL/Parquet rows {id, question,
context, answers: {text: [...], answer_start: [...]}} (the hub's layout; an empty list = no answer).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from albert.errors import DataError
from albert.io.files import base_suffix, expect, field_of, iter_records, read_json
from albert.tasks import metrics
from albert.tasks.base import Featurizer
from albert.tasks.batching import Steps, finish
from albert.tokenization.tokenizer import AlbertTokenizer


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max())
    return z / z.sum()


@dataclass
class QAExample:
    qid: str
    question: str
    context: str
    answers: list[str]  # empty: unanswerable
    starts: list[int]  # character offsets of the answers in the context
    where: str


def _check_answers(texts: list[Any], starts: list[Any], context: str, where: str) -> tuple[list[str], list[int]]:
    if len(texts) != len(starts):
        raise DataError(f"{where}: answers have {len(texts)} texts but {len(starts)} answer_start values")
    fixed = []
    for k, (text, start) in enumerate(zip(texts, starts)):
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: answer {k + 1}'s text must be a non-empty string, got {text!r}")
        if not isinstance(start, int) or isinstance(start, bool) or start < 0:
            raise DataError(f"{where}: answer {k + 1}'s answer_start must be an integer >= 0, got {start!r}")
        if context[start:start + len(text)] != text:
            # tolerate the off-by-one or two starts some datasets carry; otherwise the row is wrong
            near = [s for s in range(max(0, start - 2), start + 3) if context[s:s + len(text)] == text]
            if not near:
                raise DataError(f"{where}: answer {text!r} is not in its context at {start}")
            start = near[0]
        fixed.append(start)
    return list(texts), fixed


def read_qa(path: str | Path, need_answers: bool = True) -> list[QAExample]:
    """SQuAD JSON or JSONL/Parquet rows; every field's type is checked, errors name the file and JSON path."""
    path = Path(path)
    if base_suffix(path) == ".json":
        return _read_squad(path, need_answers)
    out: list[QAExample] = []
    for n, row in iter_records(path):
        where = f"{path}:{n}"
        question, context = field_of(row, "question", str, where), field_of(row, "context", str, where)
        answers = field_of(row, "answers", dict, where, default=None)
        if answers is None:
            if need_answers:
                raise DataError(f"{where}: no 'answers'")
            answers = {"text": [], "answer_start": []}
        texts = field_of(answers, "text", list, f"{where}: answers", default=[])
        starts = field_of(answers, "answer_start", list, f"{where}: answers", default=[])
        texts, starts = _check_answers(texts, starts, context, where)
        qid = row.get("id", n)
        if not isinstance(qid, (str, int)) or isinstance(qid, bool):
            raise DataError(f"{where}: 'id' must be a string or an integer, got {type(qid).__name__}")
        out.append(QAExample(str(qid), question, context, texts, starts, where))
    return out


def _read_squad(path: Path, need_answers: bool) -> list[QAExample]:
    doc = read_json(path)
    if not isinstance(doc, dict) or "data" not in doc:
        raise DataError(f"{path}: not a SQuAD file (expected an object with 'data')")
    out: list[QAExample] = []
    for a, article in enumerate(expect(doc["data"], list, f"{path}: data")):
        here = f"{path}: data[{a}]"
        expect(article, dict, here)
        for p, para in enumerate(field_of(article, "paragraphs", list, here)):
            at = f"{here}.paragraphs[{p}]"
            expect(para, dict, at)
            context = field_of(para, "context", str, at)
            for q, qa in enumerate(field_of(para, "qas", list, at)):
                where = f"{at}.qas[{q}]"
                expect(qa, dict, where)
                qid = qa.get("id")
                if not isinstance(qid, (str, int)) or isinstance(qid, bool):
                    raise DataError(f"{where}: 'id' must be a string or an integer")
                question = field_of(qa, "question", str, where)
                impossible = field_of(qa, "is_impossible", bool, where, default=False)
                answers = [] if impossible else field_of(qa, "answers", list, where, default=None)
                if answers is None:
                    if need_answers:
                        raise DataError(f"{where}: no 'answers'")
                    answers = []
                for k, x in enumerate(answers):
                    expect(x, dict, f"{where}.answers[{k}]")
                texts, starts = _check_answers([x.get("text") for x in answers],
                                               [x.get("answer_start") for x in answers], context, where)
                out.append(QAExample(str(qid), question, context, texts, starts, where))
    return out


class QAFeatures(Featurizer):
    """Windows over long contexts, span search over their outputs, answers mapped back into the context."""

    def __init__(self, tokenizer: AlbertTokenizer, max_seq_length: int, eval_batch_size: int = 32,
                 doc_stride: int = 128, max_answer_length: int = 30, n_best: int = 20, version_2: bool = False,
                 answerability_head: bool = False) -> None:
        super().__init__(tokenizer, max_seq_length, eval_batch_size)
        self.doc_stride = doc_stride
        self.max_answer_length, self.n_best, self.version_2 = max_answer_length, n_best, version_2
        # the original ALBERT's SQuAD 2.0 head (AlbertForQuestionAnsweringWithAnswerability) instead of the
        # span head's [CLS]-span null score
        self.answerability_head = answerability_head

    def featurize(self, examples: list[QAExample], training: bool = False) -> list[dict[str, Any]]:
        if not examples:
            return []
        # As the original runner: questions longer than max_query tokens are cut, which leaves every
        # window at least max_seq_length - max_query - 3 context tokens, so the stride always fits.
        max_query = min(64, self.max_seq_length // 2 - 2)
        stride = min(self.doc_stride, self.max_seq_length - max_query - 4)
        questions = [self._cut(e.question, max_query) for e in examples]
        enc = self.tokenizer(questions, [e.context for e in examples], truncation="only_second",
                             max_length=self.max_seq_length, stride=stride, return_overflowing_tokens=True,
                             return_offsets_mapping=True)
        feats = []
        for w, n in enumerate(enc["overflow_to_sample_mapping"]):
            types, offsets = enc["token_type_ids"][w], enc["offset_mapping"][w]
            # context tokens: type 1, minus the final [SEP]
            ctx = [i for i, t in enumerate(types) if t == 1][:-1]
            # p_mask: 1 where no answer can start or end; [CLS] stays open, as "no answer here"
            p_mask = [1] * len(types)
            for i in [0, *ctx]:
                p_mask[i] = 0
            feat = {"input_ids": enc["input_ids"][w], "token_type_ids": types, "example": n,
                    "context_tokens": ctx, "offsets": offsets, "start": 0, "end": 0, "p_mask": p_mask}
            e = examples[n]
            if training and e.answers:
                s_char, e_char = e.starts[0], e.starts[0] + len(e.answers[0])
                inside = [i for i in ctx if offsets[i][0] < e_char and offsets[i][1] > s_char]
                if inside and offsets[ctx[0]][0] <= s_char and offsets[ctx[-1]][1] >= e_char:
                    feat["start"], feat["end"] = inside[0], inside[-1]
            feats.append(feat)
        return feats

    def featurize_train(self, examples: list[QAExample]) -> list[dict[str, Any]]:
        return self.featurize(examples, training=True)

    def _cut(self, text: str, max_tokens: int) -> str:
        enc = self.tokenizer.encode_pieces([text], with_offsets=True)[0]
        return text if len(enc.ids) <= max_tokens else text[:enc.offsets[max_tokens - 1][1]]

    def collate(self, feats: list[dict[str, Any]], with_labels: bool = True) -> dict[str, Tensor]:
        batch = self.encode_rows(feats)
        if self.answerability_head:
            batch["p_mask"] = self.pad([f["p_mask"] for f in feats], 1)
        if with_labels:
            batch["start_positions"] = torch.tensor([f["start"] for f in feats])
            batch["end_positions"] = torch.tensor([f["end"] for f in feats])
            if self.answerability_head:  # a window without the answer counts as unanswerable (as the original)
                batch["is_impossible"] = (batch["start_positions"] == 0).float()
        return batch

    def loss(self, model: nn.Module, batch: dict[str, Tensor], norm: Tensor) -> tuple[Tensor, Tensor]:
        if self.answerability_head:
            out = model(**batch)  # its loss: (start CE + end CE) / 2 + 0.5 answerability BCE, batch means
            s, e = out.start_logits.float(), out.end_logits.float()
            loss_sum = out.loss.float() * len(s)
        else:
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        token_type_ids=batch["token_type_ids"])
            s, e = out.start_logits.float(), out.end_logits.float()
            loss_sum = (F.cross_entropy(s, batch["start_positions"], reduction="sum")
                        + F.cross_entropy(e, batch["end_positions"], reduction="sum")) / 2
        correct = ((s.argmax(-1) == batch["start_positions"]) & (e.argmax(-1) == batch["end_positions"])).sum()
        return (loss_sum / norm[0]).float(), self.stats(loss_sum, float(len(s)), correct)

    def predict_answers(self, model: nn.Module, examples: list[QAExample], device: torch.device,
                        dtype: torch.dtype | None = None) -> list[Answer]:
        """Best span per question (n-best over all its windows) and its no-answer score."""
        return finish(self.answer_steps(model, examples, device, dtype))

    def answer_steps(self, model: nn.Module, examples: list[QAExample], device: torch.device,
                     dtype: torch.dtype | None = None) -> Steps[list[Answer]]:
        """`predict_answers` a model call at a time (albert.tasks.batching.Steps): a long context's windows are
        batches that other work may come between."""
        feats = self.featurize(examples)
        yield 0
        best: dict[int, tuple[float, int, int, float]] = {}  # span score, char start, char end, probability
        null: dict[int, float] = {}  # per question, the lowest "no answer" score over its windows
        for idx, out in self.batched_outputs(model, feats, device, dtype):
            batch_feats = [feats[i] for i in idx]
            for f, (null_score, candidates) in zip(batch_feats, self._candidates(out, batch_feats)):
                n, ctx = f["example"], f["context_tokens"]
                null[n] = min(null.get(n, np.inf), null_score)
                allowed = set(ctx)
                for score, i, j, prob in candidates:
                    if i not in allowed or j not in allowed or j < i or j - i + 1 > self.max_answer_length:
                        continue
                    if n not in best or score > best[n][0]:
                        best[n] = (score, f["offsets"][i][0], f["offsets"][j][1], prob)
            yield sum(len(f["input_ids"]) for f in batch_feats)
        answers = []
        for n, e in enumerate(examples):
            score, a, b, prob = best.get(n, (-np.inf, 0, 0, 0.0))
            # > 0: the model prefers "no answer". The answerability head's logit is that score itself; the span
            # head compares the [CLS] span's score with the best real span's.
            answers.append(Answer(e.qid, e.context[a:b], prob, a, b,
                                  null.get(n, 0.0) - (0.0 if self.answerability_head else score)))
        return answers

    def _candidates(self, out: Any, feats: list[dict[str, Any]]
                    ) -> Iterator[tuple[float, list[tuple[float, int, int, float]]]]:
        """Per window: its no-answer score and candidate spans (score, start token, end token, probability)."""
        if self.answerability_head:
            # the head's beam: start_n_top starts, each with its end_n_top ends; score = log p(start) + log p(end)
            cls = out.cls_logits.float().cpu().numpy()
            s_lp, s_ix = out.start_top_log_probs.float().cpu().numpy(), out.start_top_index.cpu().numpy()
            e_lp, e_ix = out.end_top_log_probs.float().cpu().numpy(), out.end_top_index.cpu().numpy()
            for b in range(len(cls)):
                spans = [(float(s_lp[b, i] + e_lp[b, i, j]), int(s_ix[b, i]), int(e_ix[b, i, j]),
                          float(np.exp(s_lp[b, i] + e_lp[b, i, j])))
                         for i in range(s_ix.shape[1]) for j in range(e_ix.shape[2])]
                yield float(cls[b]), spans
            return
        starts, ends = out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()
        for f, s_log, e_log in zip(feats, starts, ends):
            ctx = np.asarray(f["context_tokens"], dtype=np.int64)
            ps, pe = _softmax(s_log), _softmax(e_log)
            # the n_best starts and ends among the window's context tokens
            top_s = ctx[np.argsort(-s_log[ctx])[:self.n_best]] if len(ctx) else ctx
            top_e = ctx[np.argsort(-e_log[ctx])[:self.n_best]] if len(ctx) else ctx
            yield float(s_log[0] + e_log[0]), [(float(s_log[i] + e_log[j]), int(i), int(j), float(ps[i] * pe[j]))
                                               for i in top_s for j in top_e]

    def score_examples(self, model: nn.Module, examples: list[QAExample], device: torch.device,
                       dtype: torch.dtype | None = None) -> dict[str, float]:
        answers = self.predict_answers(model, examples, device, dtype)
        spans = {a.qid: a.text for a in answers}
        no_answer = {a.qid: a.no_answer_score for a in answers}
        golds = {e.qid: e.answers for e in examples}
        decided = {a.qid: a.decided(self.version_2).text for a in answers}
        scores = metrics.squad_scores(decided, golds)
        if self.version_2:
            scores.update(metrics.squad_v2_best_threshold(spans, no_answer, golds))
        return scores

    def predict_rows(self, model: nn.Module, examples: list[QAExample], device: torch.device,
                     dtype: torch.dtype | None = None) -> list[dict[str, Any]]:
        """The question-answering output (as `albert answer` gives it) with each question's id; SQuAD 2.0 models
        answer "" where they prefer no answer."""
        return [{"id": a.qid} | a.decided(self.version_2).output()
                for a in self.predict_answers(model, examples, device, dtype)]


@dataclass(frozen=True)
class Answer:
    """A question's best span in its context (character offsets) and how much the model prefers no answer."""

    qid: str
    text: str
    score: float  # the span's probability: p(start) · p(end)
    start: int
    end: int
    no_answer_score: float  # > 0: "no answer" scores higher than the best span

    def decided(self, allow_no_answer: bool, threshold: float = 0.0) -> Answer:
        """The answer, or the empty one where no answer is allowed and preferred (SQuAD 2.0's decision)."""
        if allow_no_answer and self.no_answer_score > threshold:
            return dataclasses.replace(self, text="", start=0, end=0)
        return self

    def output(self) -> dict[str, Any]:
        """The question-answering task's output shape (transformers' pipeline plus the no-answer score)."""
        return {"answer": self.text, "score": self.score, "start": self.start, "end": self.end,
                "no_answer_score": self.no_answer_score}
