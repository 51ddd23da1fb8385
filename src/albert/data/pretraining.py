"""ALBERT pretraining examples: segment pairs with sentence-order labels, and n-gram whole-word masking.

Follows the original create_pretraining_data.py (google-research/albert) with two deliberate departures:
every random draw comes from a generator seeded by (seed, epoch, shard or example), so examples are
reproducible and masking is dynamic (new each epoch, instead of dupe_factor copies on disk); and a
chunk of a single sentence is split inside the sentence rather than paired with a random document.
"""

from __future__ import annotations

import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import torch

from albert.data.shards import Corpus
from albert.errors import ConfigError
from albert.modeling.config import MIN_SEQ_LENGTH
from albert.tokenization.tokenizer import AlbertTokenizer

_PUNCTUATION = set(string.punctuation) | {"€", "£"}


@dataclass
class ExampleSettings:
    max_seq_length: int = 128
    short_seq_prob: float = 0.1
    masked_lm_prob: float = 0.15
    max_predictions_per_seq: int = 20
    max_ngram: int = 3

    def __post_init__(self) -> None:
        if self.max_seq_length < MIN_SEQ_LENGTH:
            raise ConfigError(f"max_seq_length must be at least {MIN_SEQ_LENGTH}, got {self.max_seq_length}")
        if not 0 < self.masked_lm_prob < 1:
            raise ConfigError(f"masked_lm_prob must be in (0, 1), got {self.masked_lm_prob}")
        if not 0 <= self.short_seq_prob <= 1:
            raise ConfigError(f"short_seq_prob must be in [0, 1], got {self.short_seq_prob}")
        if self.max_ngram < 1:
            raise ConfigError(f"max_ngram must be >= 1, got {self.max_ngram}")
        if self.max_predictions_per_seq < 1:
            raise ConfigError(f"max_predictions_per_seq must be >= 1, got {self.max_predictions_per_seq}")


class SegmentPair(NamedTuple):
    a: np.ndarray
    b: np.ndarray
    sop_label: int  # 0: A then B as in the text; 1: swapped


def create_segment_pairs(
    document: list[np.ndarray], max_num_tokens: int, short_seq_prob: float, rng: np.random.Generator
) -> list[SegmentPair]:
    """Chunks of consecutive sentences up to a target length, split into A/B, swapped half the time."""
    # A paragraph-per-line corpus has lines longer than a sequence: cut them into halves of a sequence
    # so that their text is used, not truncated away (sentence-per-line corpora are unaffected).
    piece = max(1, (max_num_tokens + 1) // 2)
    if any(len(s) > max_num_tokens for s in document):
        document = [s[i:i + piece] for s in document for i in range(0, len(s), piece)] if document else document
    target = max_num_tokens
    if rng.random() < short_seq_prob:
        target = int(rng.integers(2, max_num_tokens + 1))
    pairs: list[SegmentPair] = []
    chunk: list[np.ndarray] = []
    length = 0
    for i, sentence in enumerate(document):
        chunk.append(sentence)
        length += len(sentence)
        if i == len(document) - 1 or length >= target:
            if len(chunk) >= 2:
                a_end = int(rng.integers(1, len(chunk)))
                a = np.concatenate(chunk[:a_end])
                b = np.concatenate(chunk[a_end:])
            else:
                # One sentence (often a long paragraph): split it inside, so SOP still has two real halves.
                tokens = chunk[0]
                if len(tokens) < 2:
                    chunk, length = [], 0
                    continue
                cut = int(rng.integers(1, len(tokens)))
                a, b = tokens[:cut], tokens[cut:]
            label = 0
            if rng.random() < 0.5:
                a, b, label = b, a, 1
            a, b = truncate_pair(a, b, max_num_tokens, rng)
            pairs.append(SegmentPair(a, b, label))
            chunk, length = [], 0
    return pairs


def truncate_pair(a: np.ndarray, b: np.ndarray, max_num_tokens: int, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Remove one token at a time from the longer segment, from its front or back at random."""
    a0, a1, b0, b1 = 0, len(a), 0, len(b)
    while (a1 - a0) + (b1 - b0) > max_num_tokens:
        if (a1 - a0) > (b1 - b0):
            if rng.random() < 0.5:
                a0 += 1
            else:
                a1 -= 1
        else:
            if rng.random() < 0.5:
                b0 += 1
            else:
                b1 -= 1
    return a[a0:a1], b[b0:b1]


class MaskedExample(NamedTuple):
    input_ids: np.ndarray  # (T,)
    token_type_ids: np.ndarray  # (T,)
    mlm_positions: np.ndarray  # (P,) positions of the predictions, P <= max_predictions
    mlm_labels: np.ndarray  # (P,) original ids there
    sop_label: int
    ngram_sizes: list[int]  # size in words of each masked span (for statistics)


class Masker:
    """Whole-word n-gram masking with ALBERT's word-start rule and 80/10/10 replacement."""

    def __init__(self, tokenizer: AlbertTokenizer, settings: ExampleSettings) -> None:
        self.settings = settings
        self.cls_id, self.sep_id, self.mask_id = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.mask_token_id
        V = tokenizer.vocab_size
        self.vocab_size = V
        self.is_word_start = [_starts_word(tokenizer.sp.id_to_piece(i)) for i in range(V)]
        # random replacements never draw a special token
        self.normal_ids = np.array([i for i in range(V) if i not in set(tokenizer.all_special_ids)], dtype=np.int64)
        n = np.arange(1, settings.max_ngram + 1)
        self.ngram_p = (1.0 / n) / (1.0 / n).sum()

    def build(self, pair: SegmentPair, rng: np.random.Generator) -> MaskedExample:
        ids = np.concatenate([[self.cls_id], pair.a, [self.sep_id], pair.b, [self.sep_id]]).astype(np.int64)
        types = np.zeros(len(ids), dtype=np.int64)
        types[len(pair.a) + 2:] = 1
        positions, labels, sizes = self.mask(ids, rng)
        return MaskedExample(ids, types, positions, labels, pair.sop_label, sizes)

    def mask(self, ids: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """Mask `ids` in place; returns the masked positions (sorted), their original ids and span sizes.

        The original shrinks a drawn n-gram that overflows the budget and skips overlapping ones, which
        skews the spans towards 1-grams (0.61 / 0.25 / 0.14 measured instead of 0.545 / 0.273 / 0.182).
        Here n is drawn first (p ∝ 1/n) and a start is then searched among those where n free words fit;
        at the budget's edge a span that does not fit is still taken with probability remaining/needed,
        so the mask rate stays 15% in expectation; n shrinks only when no start can hold it at all.
        """
        s = self.settings
        words: list[list[int]] = []  # a piece that does not start a word joins the previous word
        for i, t in enumerate(ids.tolist()):
            if t == self.cls_id or t == self.sep_id:
                continue
            if words and not self.is_word_start[t] and words[-1][-1] == i - 1:
                words[-1].append(i)
            else:
                words.append([i])
        budget = min(s.max_predictions_per_seq, max(1, int(round(len(ids) * s.masked_lm_prob))))
        lengths = np.array([len(w) for w in words], dtype=np.int64)
        used = np.zeros(len(words), dtype=bool)
        chosen: list[int] = []
        sizes: list[int] = []
        while len(chosen) < budget:
            n = int(rng.choice(s.max_ngram, p=self.ngram_p)) + 1
            start = -1
            for size in range(n, 0, -1):
                free, span_len = self._spans(used, lengths, size)
                room = budget - len(chosen)
                fits = np.flatnonzero(free & (span_len <= room))
                if len(fits):
                    start = int(fits[rng.integers(len(fits))])
                elif size == n:
                    over = np.flatnonzero(free & (len(chosen) + span_len <= s.max_predictions_per_seq))
                    if len(over):
                        w = int(over[rng.integers(len(over))])
                        if rng.random() >= room / span_len[w]:
                            break  # randomized rounding says stop here
                        start = w
                if start >= 0:
                    n = size
                    break
            if start < 0:
                break
            used[start:start + n] = True
            chosen.extend(i for w in words[start:start + n] for i in w)
            sizes.append(n)
        positions = np.array(sorted(chosen), dtype=np.int64)
        labels = ids[positions].copy()
        for pos in positions:
            r = rng.random()
            if r < 0.8:
                ids[pos] = self.mask_id
            elif r < 0.9:
                ids[pos] = self.normal_ids[rng.integers(len(self.normal_ids))]
            # else: keep the original token
        return positions, labels, sizes

    @staticmethod
    def _spans(used: np.ndarray, lengths: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """For every start: are its n words all free, and how many tokens do they hold."""
        L = len(lengths) - n + 1
        if L <= 0:
            return np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64)
        free = np.ones(L, dtype=bool)
        total = np.zeros(L, dtype=np.int64)
        for j in range(n):
            free &= ~used[j:j + L]
            total += lengths[j:j + L]
        return free, total


def _starts_word(piece: str) -> bool:
    """The original's rule: ▁-prefixed, a control/special piece, punctuation, or not purely a–z."""
    if piece.startswith("▁") or piece.startswith("<") or piece.startswith("[") or piece in _PUNCTUATION:
        return True
    return not all(c in string.ascii_lowercase for c in piece.replace("▁", ""))


# ----- the example stream -----
# Documents per shuffle window in "shuffled" order: the pairs of this many randomly drawn documents are made
# and shuffled together, so memory stays bounded while every window is a sample of the whole corpus.
WINDOW_DOCUMENTS = 2048
DocumentOrder = Literal["shuffled", "sequential"]


class PretrainingStream:
    """Deterministic stream of masked examples: epoch e's order and masks depend only on (seed, e).

    "shuffled" (the default) visits every document of the corpus in one seeded permutation, in windows
    of WINDOW_DOCUMENTS whose segment pairs are shuffled together; shards are memory-mapped, so the random
    access is cheap. This matters: shards hold documents in corpus order, and a corpus concatenated from
    sources (a dictionary, then a bible, then manuals) read a shard at a time is a stream whose domain
    changes every few hundred steps — the model forgets one source while it learns the next.
    "sequential" visits shards in a seeded order and shuffles pairs within each shard (less random I/O;
    right only when the shards are already mixed).
    Example number k of an epoch is masked with a generator seeded by (seed, epoch, k), so any process can
    produce any example: that is what makes resume exact and rank sharding trivial.
    """

    def __init__(self, corpus: Corpus, masker: Masker, settings: ExampleSettings, seed: int,
                 order: DocumentOrder = "shuffled") -> None:
        self.corpus = corpus
        self.masker = masker
        self.settings = settings
        self.seed = seed
        self.order = order
        self._doc_starts = np.cumsum([0] + [s.num_documents for s in corpus.shards])

    def _pairs(self, documents: Sequence[tuple[int, int]], rng: np.random.Generator) -> list[SegmentPair]:
        """The shuffled segment pairs of these (shard, document) pairs."""
        max_num = self.settings.max_seq_length - 3
        pairs = [p for shard, d in documents
                 for p in create_segment_pairs(self.corpus.shards[shard].document(d), max_num,
                                               self.settings.short_seq_prob, rng)]
        order = rng.permutation(len(pairs))
        return [pairs[i] for i in order]

    def _windows(self, epoch: int) -> Iterator[list[SegmentPair]]:
        if self.order == "sequential":
            for shard in np.random.default_rng([self.seed, epoch, 1 << 20]).permutation(len(self.corpus.shards)):
                rng = np.random.default_rng([self.seed, epoch, int(shard), 0])
                yield self._pairs([(int(shard), d) for d in range(self.corpus.shards[shard].num_documents)], rng)
            return
        docs = np.random.default_rng([self.seed, epoch, 1 << 21]).permutation(int(self._doc_starts[-1]))
        for w, start in enumerate(range(0, len(docs), WINDOW_DOCUMENTS)):
            window = docs[start:start + WINDOW_DOCUMENTS]
            shards = np.searchsorted(self._doc_starts, window, side="right") - 1
            located = [(int(s), int(g - self._doc_starts[s])) for s, g in zip(shards, window)]
            yield self._pairs(located, np.random.default_rng([self.seed, epoch, w, 3]))

    def epoch_pairs(self, epoch: int, start: int = 0) -> Iterator[tuple[int, SegmentPair]]:
        """(index in epoch, pair) from `start` on."""
        k = 0
        for pairs in self._windows(epoch):
            if k + len(pairs) <= start:
                k += len(pairs)
                continue
            for j in range(max(0, start - k), len(pairs)):
                yield k + j, pairs[j]
            k += len(pairs)

    def examples(self, epoch: int, start: int = 0) -> Iterator[tuple[int, MaskedExample]]:
        for k, pair in self.epoch_pairs(epoch, start):
            rng = np.random.default_rng([self.seed, epoch, k, 2])
            yield k, self.masker.build(pair, rng)


def collate(examples: list[MaskedExample], pad_id: int, max_predictions: int) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence of the batch; MLM targets as (positions, labels) padded with -100."""
    B = len(examples)
    T = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    types = torch.zeros((B, T), dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    positions = torch.zeros((B, max_predictions), dtype=torch.long)
    labels = torch.full((B, max_predictions), -100, dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        input_ids[i, :n] = torch.from_numpy(e.input_ids)
        types[i, :n] = torch.from_numpy(e.token_type_ids)
        mask[i, :n] = 1
        p = len(e.mlm_positions)
        positions[i, :p] = torch.from_numpy(e.mlm_positions)
        labels[i, :p] = torch.from_numpy(e.mlm_labels)
    sop = torch.tensor([e.sop_label for e in examples], dtype=torch.long)
    return {"input_ids": input_ids, "token_type_ids": types, "attention_mask": mask, "mlm_positions": positions,
            "labels": labels, "sentence_order_label": sop}


# ----- packing: several short examples in one row -----
def pack_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices grouped into rows whose lengths sum to at most `capacity`: best fit, longest first.

    Rooms are bucketed by size, so each placement looks at most `capacity` buckets (not every open row)."""
    rooms: list[list[int]] = [[] for _ in range(capacity + 1)]  # rooms[r]: rows with exactly r positions free
    rows: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        n = lengths[i]
        if n > capacity:
            raise ValueError(f"an example of {n} tokens does not fit a row of {capacity}")
        r = next((r for r in range(n, capacity + 1) if rooms[r]), -1)
        if r < 0:
            row = len(rows)
            rows.append([])
            free.append(capacity)
        else:
            row = rooms[r].pop()
        rows[row].append(i)
        free[row] -= n
        rooms[free[row]].append(row)
    return rows


def collate_packed(rows: list[list[MaskedExample]], pad_id: int, length: int = 0,
                   predictions_multiple: int = 1) -> dict[str, torch.Tensor]:
    """Rows of several examples each, as one batch: every example keeps its own [CLS] A [SEP] B [SEP], its
    positions restart at 0 and `example_ids` (1, 2, …; 0 for padding) lets attention see only its own example,
    so each example's outputs are the ones it would have alone in a padded batch. The SOP head reads every
    example's [CLS] (`sop_positions`); labels and positions are padded with -100 / 0.
    `length` pads every row to that length, and `predictions_multiple` rounds the prediction slots up: fewer
    distinct shapes, so a compiled step is not recompiled for each batch."""
    B = len(rows)
    T = max(length, max(sum(len(e.input_ids) for e in row) for row in rows))
    P = max(1, max(sum(len(e.mlm_positions) for e in row) for row in rows))
    P = -(-P // predictions_multiple) * predictions_multiple
    S = max(len(row) for row in rows)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    types = torch.zeros((B, T), dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    position_ids = torch.zeros((B, T), dtype=torch.long)
    example_ids = torch.zeros((B, T), dtype=torch.long)
    mlm_positions = torch.zeros((B, P), dtype=torch.long)
    labels = torch.full((B, P), -100, dtype=torch.long)
    sop_positions = torch.zeros((B, S), dtype=torch.long)
    sop = torch.full((B, S), -100, dtype=torch.long)
    for i, row in enumerate(rows):
        start = p = 0
        for j, e in enumerate(row):
            n, m = len(e.input_ids), len(e.mlm_positions)
            input_ids[i, start:start + n] = torch.from_numpy(e.input_ids)
            types[i, start:start + n] = torch.from_numpy(e.token_type_ids)
            mask[i, start:start + n] = 1
            position_ids[i, start:start + n] = torch.arange(n)
            example_ids[i, start:start + n] = j + 1
            mlm_positions[i, p:p + m] = torch.from_numpy(e.mlm_positions) + start
            labels[i, p:p + m] = torch.from_numpy(e.mlm_labels)
            sop_positions[i, j] = start
            sop[i, j] = e.sop_label
            start, p = start + n, p + m
    return {"input_ids": input_ids, "token_type_ids": types, "attention_mask": mask, "position_ids": position_ids,
            "example_ids": example_ids, "mlm_positions": mlm_positions, "labels": labels,
            "sop_positions": sop_positions, "sentence_order_label": sop}
