"""What every fine-tuning task shares: the data order and rank slicing the loop expects, and padding."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from albert.tokenizer import AlbertTokenizer


class FeatureTask:
    """Featurized training examples served to the one loop in seeded epoch order.

    Subclasses define `collate` (features → tensors) and `loss`; `units` says how many loss terms an
    example contributes, so the loss is normalised over the whole step (all micro-batches, all ranks).
    """

    stat_names = ["loss_sum", "count", "correct"]

    def __init__(self, tokenizer: AlbertTokenizer, train: list[dict[str, Any]], batch_size: int, seed: int,
                 eval_batch_size: int = 64) -> None:
        self.tokenizer = tokenizer
        self.train = train
        self.batch_size, self.seed, self.eval_batch_size = batch_size, seed, eval_batch_size
        self.epoch, self.index = 0, 0
        self._order = self._epoch_order(0)

    def collate(self, feats: list[dict[str, Any]], with_labels: bool = True) -> dict[str, Tensor]:
        raise NotImplementedError

    def units(self, batch: dict[str, Tensor]) -> float:
        return float(len(batch["input_ids"]))

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
                        dtype: torch.dtype | None) -> Iterator[tuple[list[int], Any]]:
        """The model's eval-mode outputs over `feats` in length-sorted batches (little padding), each with the
        indices of its features; the model's training mode is restored afterwards."""
        was = model.training
        model.eval()
        order = sorted(range(len(feats)), key=lambda i: _length(feats[i]["input_ids"]))
        try:
            for k in range(0, len(order), self.eval_batch_size):
                idx = order[k:k + self.eval_batch_size]
                batch = {n: v.to(device) for n, v in self.collate([feats[i] for i in idx], False).items()}
                with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float32,
                                                     enabled=dtype is not None):
                    out = model(**batch)
                yield idx, out
        finally:
            model.train(was)

    # --- the loop's protocol ---
    def _epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch, 7]).permutation(len(self.train))

    def step_batches(self, step: int, rank: int, world: int, micro_batch: int) -> list[dict[str, Tensor]]:
        chosen: list[int] = []
        while len(chosen) < self.batch_size:
            if self.index >= len(self._order):
                self.epoch, self.index = self.epoch + 1, 0
                self._order = self._epoch_order(self.epoch)
            take = min(self.batch_size - len(chosen), len(self._order) - self.index)
            chosen.extend(self._order[self.index:self.index + take].tolist())
            self.index += take
        out = []
        for m in range(self.batch_size // (micro_batch * world)):
            lo = (m * world + rank) * micro_batch  # the same examples whatever the process layout
            out.append(self.collate([self.train[i] for i in chosen[lo:lo + micro_batch]]))
        return out

    def data_state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "index": self.index}

    def load_data_state(self, state: dict[str, Any]) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        self._order = self._epoch_order(self.epoch)

    def normalizers(self, batches: list[dict[str, Tensor]]) -> Tensor:
        return torch.tensor([max(1.0, sum(self.units(b) for b in batches))], dtype=torch.float64)

    def summarize(self, s: dict[str, float]) -> dict[str, float]:
        return {"loss": s["loss_sum"] / max(s["count"], 1), "acc": s["correct"] / max(s["count"], 1)}

    def score_examples(self, model: Any, examples: list[Any], device: torch.device,
                       dtype: torch.dtype | None) -> dict[str, float]:
        raise NotImplementedError

    def evaluate(self, model: Any, device: torch.device, dtype: torch.dtype | None) -> dict[str, float]:
        dev = getattr(self, "dev", None)
        if not dev:
            return {}
        return {f"eval_{k}": v for k, v in self.score_examples(model, dev, device, dtype).items()}

    @staticmethod
    def stats(loss_sum: Tensor, count: float, correct: Tensor) -> Tensor:
        return torch.stack([loss_sum.detach().double(), torch.tensor(count, dtype=torch.float64,
                                                                     device=loss_sum.device), correct.double()])


def _length(ids: list[int] | list[list[int]]) -> int:
    """Tokens in a feature's row, or in its longest option's row (multiple choice)."""
    return max((len(r) for r in ids), default=0) if ids and isinstance(ids[0], list) else len(ids)
