"""Batches of token rows: inputs grouped by length and padded (fill-mask's engines and the pipelines).

Imports neither torch nor the model code.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TypeVar

R = TypeVar("R")

# A computation made one model call at a time: each `yield` hands back the tokens of the call just made (0 after other
# work, such as a part of a long text's tokenization), and its return value is the answer. The server's model thread
# runs a long text's steps between other requests' batches (albert.serving.batcher); every other caller runs them
# to the end with `finish`.
Steps = Generator[int, None, R]


def finish(steps: Steps[R]) -> R:
    """The answer of `steps`, run to the end at once."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


# an inference batch's length is rounded up to a multiple of this: each new (batch, length) shape costs memory that
# stays (oneDNN's kernels for it, and what the allocator keeps), so a server or a long --file job that met every
# length from 1 to 256 grew by ~1.7 GB for the embed model; with lengths in steps of 16 it meets 16 shapes
# (docs/benchmarks.md)
LENGTH_STEP = 16


def rounded_length(longest: int, limit: int) -> int:
    """`longest` rounded up to a multiple of LENGTH_STEP, never past the model's `limit` (nor below `longest`)."""
    return max(longest, min(-(-longest // LENGTH_STEP) * LENGTH_STEP, limit))


# rows × padded length of one model call at most (buckets halves a batch's rows to fit): 32 rows up to 128 tokens, 8
# of 512. A batch's activations are then bounded whatever the texts' lengths: `embed --file` on 200,000 corpus lines
# peaked at 1.35x a 1,000-line file's with 32 rows of 512, 1.16x with this budget (docs/benchmarks.md)
MAX_BATCH_TOKENS = 32 * 128


def length_batches(lengths: list[int], limit: int, batch_size: int,
                   max_tokens: int = MAX_BATCH_TOKENS) -> list[tuple[list[int], int]]:
    """Rows (their token counts) as model calls: each call's row indices and the length it is padded to. Lengths are
    rounded up (rounded_length, at most `limit`) so that calls meet few shapes, and a call holds at most `max_tokens`
    padded tokens (buckets)."""
    rounded = [rounded_length(n, limit) for n in lengths]
    return [(idx, max(rounded[i] for i in idx)) for idx in buckets(rounded, batch_size, max_tokens)]


def pad_batch(ids: list[list[int]], types: list[list[int]], pad_id: int,
              length: int = 0) -> dict[str, list[list[int]]]:
    """Rows padded on the right to the longest (or to `length`, if longer): input_ids, token_type_ids and the
    attention_mask over them."""
    T = max(length, max(len(x) for x in ids))
    return {"input_ids": [x + [pad_id] * (T - len(x)) for x in ids],
            "token_type_ids": [t + [0] * (T - len(t)) for t in types],
            "attention_mask": [[1] * len(x) + [0] * (T - len(x)) for x in ids]}


def buckets(lengths: list[int], batch_size: int, max_tokens: int = 0) -> list[list[int]]:
    """Indices grouped into batches of similar length (sorted), so padding wastes little compute. With `max_tokens`,
    a batch whose rows × longest row would pass it holds half the rows (again, until it fits or is one row): a batch
    of long texts then holds no more activations than one of short texts. Halving, rather than filling a batch to
    the limit, keeps the row counts few (32, 16, 8): each new (rows, length) shape costs memory that stays
    (LENGTH_STEP), and rows counted to the limit met 152 shapes in 200,000 corpus lines where halving meets 50."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches = []
    start = 0
    while start < len(order):
        rows = batch_size
        while max_tokens and rows > 1 and rows * lengths[order[min(start + rows, len(order)) - 1]] > max_tokens:
            rows //= 2
        batches.append(order[start:start + rows])
        start += rows
    return batches
