"""Batches of token rows: inputs grouped by length and padded (fill-mask's engines and the pipelines).

Imports neither torch nor the model code.
"""

from __future__ import annotations


def pad_batch(ids: list[list[int]], types: list[list[int]], pad_id: int) -> dict[str, list[list[int]]]:
    """Rows padded on the right to the longest: input_ids, token_type_ids and the attention_mask over them."""
    T = max(len(x) for x in ids)
    return {"input_ids": [x + [pad_id] * (T - len(x)) for x in ids],
            "token_type_ids": [t + [0] * (T - len(t)) for t in types],
            "attention_mask": [[1] * len(x) + [0] * (T - len(x)) for x in ids]}


def buckets(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (sorted), so padding wastes little compute."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
