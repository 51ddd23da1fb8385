"""A tokenizer call's batch, as transformers builds it: the texts and their pairs checked, each sequence truncated
or cut into overlapping windows, rows padded, and the result as lists, NumPy arrays or torch tensors; and the
word-bounded parts a long text is encoded in."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from albert.errors import InputError

Truncation = bool | Literal["longest_first", "only_first", "only_second", "do_not_truncate"]
Padding = bool | Literal["longest", "max_length", "do_not_pad"]

_WORD_END_RE = re.compile(r"\S(?=\s)")
# SentencePiece finds a text's best segmentation by summing its pieces' scores in float32 from the text's start, so on
# a long text the sums grow until their rounding exceeds the margins between a word's segmentations (the vocabulary
# compiled from WordPiece has margins of 0.0025: a 40,000-character text segmented words differently from the same
# words in a short text). Texts are therefore encoded in parts of about this many characters, cut only where a word
# ends before whitespace: no piece spans whitespace and every rule of `preprocess_text` is local to a word, so the
# parts' pieces are each word's own.
SPAN_CHARS = 1000


def word_bounded_spans(text: str, size: int = SPAN_CHARS) -> list[tuple[int, int]]:
    """[start, end) parts of `text` that cover it, each about `size` characters, each cut after a word's last
    character where whitespace follows (a text without such a place is one part)."""
    spans, start = [], 0
    while len(text) - start > size:
        end = _WORD_END_RE.search(text, start + size - 1)
        if end is None:
            break
        spans.append((start, end.end()))
        start = end.end()
    spans.append((start, len(text)))
    return spans


class BatchEncoding(dict):
    """A dict of model inputs (`input_ids`, `attention_mask`, ...) that also allows attribute access."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(self, device: Any) -> BatchEncoding:
        return BatchEncoding({k: v.to(device) if hasattr(v, "to") else v for k, v in self.items()})


@dataclass
class Encoded:
    """One text's pieces without special tokens: ids and (start, end) character spans in the original text."""

    ids: list[int]
    offsets: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.ids)


def texts_and_pairs(text: Any, text_pair: Any) -> tuple[list[str], list[str] | None, bool]:
    """(texts, their pairs or None, whether one text was given rather than a list)."""
    single = isinstance(text, str)
    if not single and not isinstance(text, (list, tuple)):
        raise InputError(f"expected a string or a list of strings, got {type(text).__name__}")
    texts = [text] if single else list(text)
    pairs: list[str] | None = None
    if text_pair is not None:
        pairs = [text_pair] if isinstance(text_pair, str) else list(text_pair)
        if len(pairs) != len(texts):
            raise InputError(f"{len(texts)} texts but {len(pairs)} text pairs")
    return texts, pairs, single


def truncation_strategy(truncation: Truncation) -> str:
    if truncation is True:
        return "longest_first"
    if truncation is False:
        return "do_not_truncate"
    if truncation not in ("longest_first", "only_first", "only_second", "do_not_truncate"):
        raise InputError(f"unknown truncation {truncation!r}")
    return truncation


def windows(a: Encoded, b: Encoded | None, strategy: str, max_length: int | None, stride: int, specials: bool,
             overflow: bool) -> Iterator[tuple[Encoded, Encoded | None]]:
    """Truncate a (pair of) sequence(s) to max_length; with `overflow`, every window (stride = overlap)."""
    if strategy == "do_not_truncate" or max_length is None:
        yield a, b
        return
    n_special = (3 if b is not None else 2) if specials else 0
    budget = max_length - n_special
    total = len(a.ids) + (len(b.ids) if b is not None else 0)
    if total <= budget:
        yield a, b
        return
    if b is None or strategy in ("only_first", "only_second"):
        target_is_a = b is None or strategy == "only_first"
        target: Encoded = a if target_is_a else b  # type: ignore[assignment]
        other = b if target_is_a else a
        room = budget - (len(other.ids) if other is not None else 0)
        if room <= 0:
            raise InputError(f"cannot truncate with {strategy}: the other sequence alone fills max_length "
                                 f"({max_length})")
        step = room - stride if overflow else len(target.ids)
        if step <= 0:
            raise InputError(f"stride ({stride}) must be smaller than the room left for the sequence ({room})")
        start = 0
        while True:
            piece = Encoded(target.ids[start:start + room], target.offsets[start:start + room])
            yield (piece, other) if target_is_a else (other, piece)  # type: ignore[misc]
            if not overflow or start + room >= len(target.ids):
                return
            start += step
    if overflow:
        raise InputError("return_overflowing_tokens with a pair needs truncation='only_first' or 'only_second'")
    # longest_first: remove one token at a time from the longer sequence (the second one on ties)
    la, lb = len(a.ids), len(b.ids)
    for _ in range(total - budget):
        if la > lb:
            la -= 1
        else:
            lb -= 1
    yield Encoded(a.ids[:la], a.offsets[:la]), Encoded(b.ids[:lb], b.offsets[:lb])


def pad_rows(rows: list[dict[str, list[Any]]], padding: Padding, max_length: int | None, pad_id: int) -> None:
    """Pad every field of `rows` in place: to the longest row, or to `max_length`."""
    if padding is False or padding == "do_not_pad" or not rows:
        return
    if padding == "max_length":
        if max_length is None:
            raise InputError("padding='max_length' needs max_length")
        target = max_length
    elif padding is True or padding == "longest":
        target = max(len(r["input_ids"]) for r in rows)
    else:
        raise InputError(f"unknown padding {padding!r}")
    fill = {"input_ids": pad_id, "token_type_ids": 0, "attention_mask": 0, "special_tokens_mask": 1,
            "offset_mapping": (0, 0)}
    for r in rows:
        n = target - len(r["input_ids"])
        if n > 0:
            for k in r:
                r[k] = r[k] + [fill[k]] * n


def batch_encoding(rows: list[dict[str, list[Any]]], sample_map: list[int] | None, return_tensors: str | None,
                   single: bool) -> BatchEncoding:
    """The rows as one BatchEncoding (with `overflow_to_sample_mapping` where windows were asked for): lists, or
    int64 arrays or tensors of equal-length rows; one text's own lists where one text was given."""
    out = BatchEncoding({k: [r[k] for r in rows] for k in rows[0]} if rows else {"input_ids": []})
    if sample_map is not None:
        out["overflow_to_sample_mapping"] = sample_map
    if return_tensors in ("pt", "np"):
        if len({len(r) for r in out["input_ids"]}) > 1:
            raise InputError("sequences have different lengths; pass padding=True to return tensors")
        if return_tensors == "np":  # int64, as transformers gives them (and ONNX Runtime takes them)
            return BatchEncoding({k: np.asarray(v, dtype=np.int64) for k, v in out.items()})
        import torch

        return BatchEncoding({k: torch.tensor(v) for k, v in out.items()})
    if return_tensors is not None:
        raise InputError(f"return_tensors={return_tensors!r} is not supported (use 'pt', 'np' or None)")
    if single and sample_map is None:
        return BatchEncoding({k: v[0] for k, v in out.items()})
    return out
