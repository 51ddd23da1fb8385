"""What every task's featurizer shares: padding, batched eval-mode forwards and the loop's loss statistics.

A featurizer turns a task's examples into model rows and the model's outputs back into answers and scores;
training (albert.train.finetune) and inference (albert.inference.pipelines) use the same one. It holds no
training data and knows nothing of epochs.
"""

from __future__ import annotations

from collections.abc import Iterator
from copy import copy as shallow_copy
from typing import Any

import torch
from torch import Tensor, nn

from albert.modeling.early_exit import ExitPolicy
from albert.tokenization.tokenizer import AlbertTokenizer


class Featurizer:
    """Subclasses define `featurize` (examples → features), `collate` (features → tensors), `loss` and the
    task's predictions and metrics; `units` says how many loss terms a batch contributes, so the loss is
    normalised over the whole step (all micro-batches, all ranks)."""

    stat_names = ["loss_sum", "count", "correct"]
    # early exit's policy for the evaluation forwards (`with_exit_policy`); None: every pass runs
    exit_policy: ExitPolicy | None = None

    def __init__(self, tokenizer: AlbertTokenizer, max_seq_length: int, eval_batch_size: int = 64) -> None:
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.eval_batch_size = eval_batch_size

    def with_exit_policy(self, policy: ExitPolicy) -> Featurizer:
        """This featurizer, its evaluation forwards run with early exit's `policy` (the model checks it fits)."""
        copy = shallow_copy(self)
        copy.exit_policy = policy
        return copy

    def featurize(self, examples: list[Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def featurize_train(self, examples: list[Any]) -> list[dict[str, Any]]:
        """Training features: with the targets the loss reads (most tasks featurize them always)."""
        return self.featurize(examples)

    def collate(self, feats: list[dict[str, Any]], with_labels: bool = True) -> dict[str, Tensor]:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: dict[str, Tensor], norm: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def score_examples(self, model: nn.Module, examples: list[Any], device: torch.device,
                       dtype: torch.dtype | None = None) -> dict[str, float]:
        raise NotImplementedError

    def predict_rows(self, model: nn.Module, examples: list[Any], device: torch.device,
                     dtype: torch.dtype | None = None) -> list[dict[str, Any]]:
        raise NotImplementedError

    def units(self, batch: dict[str, Tensor]) -> float:
        return float(len(batch["input_ids"]))

    def summarize(self, s: dict[str, float]) -> dict[str, float]:
        return {"loss": s["loss_sum"] / max(s["count"], 1), "acc": s["correct"] / max(s["count"], 1)}

    @staticmethod
    def stats(loss_sum: Tensor, count: float, correct: Tensor) -> Tensor:
        return torch.stack([loss_sum.detach().double(), torch.tensor(count, dtype=torch.float64,
                                                                     device=loss_sum.device), correct.double()])

    def pad(self, rows: list[list[int]], value: int) -> Tensor:
        T = max(len(r) for r in rows)
        out = torch.full((len(rows), T), value, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        return out

    def encode_rows(self, feats: list[dict[str, Any]]) -> dict[str, Tensor]:
        """input_ids / token_type_ids / attention_mask padded to the batch's longest row."""
        ids = self.pad([f["input_ids"] for f in feats], self.tokenizer.pad_token_id)
        return {"input_ids": ids, "token_type_ids": self.pad([f["token_type_ids"] for f in feats], 0),
                "attention_mask": (self.pad([[1] * len(f["input_ids"]) for f in feats], 0))}

    def batched_outputs(self, model: nn.Module, feats: list[dict[str, Any]], device: torch.device,
                        dtype: torch.dtype | None = None) -> Iterator[tuple[list[int], Any]]:
        """The model's eval-mode outputs over `feats` in length-sorted batches (little padding), each with the
        indices of its features; the model's training mode is restored afterwards. `dtype`: autocast to it (the
        loop's evaluation of a model training in bf16); a model prepared by albert.runtime.policy needs none."""
        was = model.training
        model.eval()
        order = sorted(range(len(feats)), key=lambda i: _length(feats[i]["input_ids"]))
        try:
            for k in range(0, len(order), self.eval_batch_size):
                idx = order[k:k + self.eval_batch_size]
                batch = {n: v.to(device) for n, v in self.collate([feats[i] for i in idx], False).items()}
                with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float32,
                                                     enabled=dtype is not None):
                    out = model(**batch, **({} if self.exit_policy is None else {"exit_policy": self.exit_policy}))
                yield idx, out
        finally:
            model.train(was)


class PassCounts:
    """The passes each example ran, gathered from batched outputs of a model that exited early
    (albert.modeling.early_exit); None where no output said (full depth)."""

    def __init__(self, n: int) -> None:
        self.counts: list[int] = [0] * n
        self.seen = False

    def add(self, idx: list[int], output: Any) -> None:
        passes = getattr(output, "exit_passes", None)
        if passes is not None:
            self.seen = True
            for i, p in zip(idx, passes.tolist()):
                self.counts[i] = int(p)

    def values(self) -> list[int] | None:
        return self.counts if self.seen else None

    @staticmethod
    def summary(passes: list[int] | None) -> dict[str, float]:
        """The mean passes per example, as a metric beside the task's (nothing at full depth)."""
        return {"mean_passes": sum(passes) / len(passes)} if passes else {}


def with_passes(answer: Any, passes: int | None) -> Any:
    """An answer ({...}, or a ranked list of them) with the passes its example ran, where it exited early."""
    if passes is None:
        return answer
    if isinstance(answer, list):
        return [{**a, "passes": passes} for a in answer]
    return {**answer, "passes": passes}


def _length(ids: list[int] | list[list[int]]) -> int:
    """Tokens in a feature's row, or in its longest option's row (multiple choice)."""
    return max((len(r) for r in ids), default=0) if ids and isinstance(ids[0], list) else len(ids)
