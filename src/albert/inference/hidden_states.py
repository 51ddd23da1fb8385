"""The last hidden states of texts in batches, without gradients: what a teacher's vectors and the fit for
fine-tuning read."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from albert.tokenization.tokenizer import AlbertTokenizer


def last_states(model: nn.Module, tokenizer: AlbertTokenizer, texts: list[str], max_seq_length: int,
                batch: int = 64) -> Iterator[tuple[Tensor, Tensor]]:
    """(last hidden states, attention mask) of `texts` in batches, without gradients."""
    for start in range(0, len(texts), batch):
        enc = tokenizer(texts[start:start + batch], truncation=True, max_length=max_seq_length, padding=True,
                        return_tensors="pt")
        with torch.inference_mode():
            yield model(**enc).last_hidden_state, enc["attention_mask"]
