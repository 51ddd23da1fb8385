"""Token classification (BIO tagging): JSONL `tokens`/`tags` rows or CoNLL-2003 columns.

Each word is tokenized on its own; its first piece carries the word's label (the others are ignored
by the loss), and predictions are read back from first pieces, so scores are per word as the
official CoNLL evaluation counts them.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from albert.errors import DataError
from albert.io.files import base_suffix, iter_records, iter_text_lines
from albert.tasks import metrics
from albert.tasks.base import Featurizer
from albert.tasks.readers import listed_labels
from albert.tokenization.tokenizer import AlbertTokenizer


@dataclass
class Tagged:
    words: list[str]
    tags: list[str] | None
    where: str


def read_tagged(path: str | Path, need_tags: bool = True, label_names: list[str] | None = None) -> list[Tagged]:
    """JSONL/Parquet rows {tokens, tags|ner_tags} or CoNLL columns (word ... tag; blank line between sentences)."""
    path = Path(path)
    out: list[Tagged] = []
    if base_suffix(path) in (".jsonl", ".parquet"):
        for n, row in iter_records(path):
            where = f"{path}:{n}"
            row_words = row.get("tokens")
            row_tags = row.get("tags", row.get("ner_tags"))
            if not isinstance(row_words, list) or not all(isinstance(w, str) for w in row_words):
                raise DataError(f"{where}: 'tokens' must be a list of strings")
            blank = next((i for i, w in enumerate(row_words) if not w.strip()), None)
            if blank is not None:  # it would make no pieces of its own: its label would have no token to sit on
                raise DataError(f"{where}: token {blank} is {row_words[blank]!r}: every token must have a "
                                "character other than whitespace")
            if row_tags is None:
                if need_tags:
                    raise DataError(f"{where}: no 'tags'")
            else:
                if not isinstance(row_tags, list) or len(row_tags) != len(row_words):
                    raise DataError(f"{where}: 'tags' must be a list as long as 'tokens' ({len(row_words)})")
                if row_tags and all(isinstance(t, int) and not isinstance(t, bool) for t in row_tags):
                    if not label_names:  # hub exports store tag ids
                        raise DataError(f"{where}: integer tags need the label names (a meta.json beside the file)")
                    bad = [t for t in row_tags if not 0 <= t < len(label_names)]
                    if bad:
                        raise DataError(f"{where}: tag id {bad[0]} is not in 0..{len(label_names) - 1}")
                    row_tags = [label_names[t] for t in row_tags]
                elif not all(isinstance(t, str) for t in row_tags):
                    raise DataError(f"{where}: 'tags' must be all strings or all tag ids")
            out.append(Tagged(row_words, row_tags, where))
        return out
    words: list[str] = []
    tags: list[str] = []
    start = 1
    lines = list(iter_text_lines(path))
    for n, line in [*lines, (len(lines) + 1, "")]:
        # one CoNLL line: word ... tag, or a blank line / -DOCSTART- between sentences
        cells = line.split()
        if not cells or cells[0] == "-DOCSTART-":
            if words:
                out.append(Tagged(words, tags if need_tags or tags else None, f"{path}:{start}"))
            words, tags, start = [], [], n + 1
            continue
        if need_tags and len(cells) < 2:
            raise DataError(f"{path}:{n}: expected 'word ... tag' columns, got {line.strip()!r}")
        words.append(cells[0])
        if len(cells) >= 2:
            tags.append(cells[-1])
    return out


class TokenFeatures(Featurizer):
    """Word-level BIO tagging: a word's first piece carries its tag."""

    def __init__(self, tokenizer: AlbertTokenizer, labels: list[str], max_seq_length: int,
                 eval_batch_size: int = 64) -> None:
        super().__init__(tokenizer, max_seq_length, eval_batch_size)
        self.labels = labels
        self.label_ids = {t: i for i, t in enumerate(labels)}

    def featurize(self, sentences: list[Tagged]) -> list[dict[str, Any]]:
        tok = self.tokenizer
        all_words = [w for s in sentences for w in s.words]
        pieces = iter(tok.encode_pieces(all_words))
        feats = []
        for s in sentences:
            ids, labels, first = [tok.cls_token_id], [-100], []
            for i in range(len(s.words)):
                word_ids = next(pieces).ids or [tok.unk_token_id]
                if len(ids) + len(word_ids) > self.max_seq_length - 1:
                    continue  # truncated: its words are predicted "O"
                first.append((i, len(ids)))
                if s.tags is not None:
                    if s.tags[i] not in self.label_ids:
                        raise DataError(f"{s.where}: tag {s.tags[i]!r} is not in the label set")
                    labels.append(self.label_ids[s.tags[i]])
                else:
                    labels.append(-100)
                labels.extend([-100] * (len(word_ids) - 1))
                ids.extend(word_ids)
            ids.append(tok.sep_token_id)
            labels.append(-100)
            feats.append({"input_ids": ids, "token_type_ids": [0] * len(ids), "labels": labels, "first": first,
                          "n_words": len(s.words)})
        return feats

    def collate(self, feats: list[dict[str, Any]], with_labels: bool = True) -> dict[str, Tensor]:
        batch = self.encode_rows(feats)
        if with_labels:
            batch["labels"] = self.pad([f["labels"] for f in feats], -100)
        return batch

    def units(self, batch: dict[str, Tensor]) -> float:
        return float((batch["labels"] != -100).sum())

    def loss(self, model: nn.Module, batch: dict[str, Tensor], norm: Tensor) -> tuple[Tensor, Tensor]:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       token_type_ids=batch["token_type_ids"]).logits.float()
        labels = batch["labels"]
        loss_sum = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100,
                                   reduction="sum")
        valid = labels != -100
        correct = ((logits.argmax(-1) == labels) & valid).sum()
        return (loss_sum / norm[0]).float(), self.stats(loss_sum, float(valid.sum()), correct)

    def predict_tags(self, model: nn.Module, sentences: list[Tagged], device: torch.device,
                     dtype: torch.dtype | None = None) -> list[list[str]]:
        return [tags for tags, _ in self.predict_scored(model, sentences, device, dtype)]

    def predict_scored(self, model: nn.Module, sentences: list[Tagged], device: torch.device,
                       dtype: torch.dtype | None = None) -> list[tuple[list[str], list[float]]]:
        """Per sentence: each word's tag and its probability (words cut off by the length limit: "O", 0)."""
        feats = self.featurize(sentences)
        out: list[tuple[list[str], list[float]]] = [([], []) for _ in feats]
        for idx, output in self.batched_outputs(model, feats, device, dtype):
            probs, best = output.logits.float().softmax(-1).max(-1)
            for row, p, i in zip(best.cpu().numpy(), probs.cpu().numpy(), idx):
                tags, scores = ["O"] * feats[i]["n_words"], [0.0] * feats[i]["n_words"]
                for word, pos in feats[i]["first"]:
                    tags[word], scores[word] = self.labels[int(row[pos])], float(p[pos])
                out[i] = (tags, scores)
        return out

    def score_tags(self, predicted: list[list[str]], sentences: list[Tagged]) -> dict[str, float]:
        gold = [s.tags or [] for s in sentences]
        scores = metrics.span_f1(predicted, gold)
        flat = [(p, g) for ps, gs in zip(predicted, gold) for p, g in zip(ps, gs)]
        scores["token_accuracy"] = float(np.mean([p == g for p, g in flat])) if flat else 0.0
        return scores

    def score_examples(self, model: nn.Module, examples: list[Tagged], device: torch.device,
                       dtype: torch.dtype | None = None) -> dict[str, float]:
        return self.score_tags(self.predict_tags(model, examples, device, dtype), examples)

    def predict_rows(self, model: nn.Module, examples: list[Tagged], device: torch.device,
                     dtype: torch.dtype | None = None) -> list[dict[str, Any]]:
        """Per sentence its words' tags and, in `albert tag`'s shape, its entities over the words joined by spaces."""
        rows = []
        for s, (tags, scores) in zip(examples, self.predict_scored(model, examples, device, dtype)):
            text = " ".join(s.words)
            starts = [0]
            for w in s.words[:-1]:
                starts.append(starts[-1] + len(w) + 1)
            pieces = [{"entity": tag, "score": score, "index": i + 1, "start": starts[i],
                       "end": starts[i] + len(s.words[i]), "word": s.words[i]}
                      for i, (tag, score) in enumerate(zip(tags, scores)) if tag != "O"]
            rows.append({"tokens": s.words, "tags": tags, "entities": group_entities(pieces, text)})
        return rows


def iter_first_piece_words(pieces: Iterable[dict[str, Any]], text: str) -> Iterator[dict[str, Any]]:
    """Tagged pieces (in order, with character offsets) → words, each with its first piece's tag and score and the
    span of its characters; `index` counts words from 1. A word starts after whitespace; a piece of whitespace alone
    (SentencePiece's ▁ before a digit or a symbol) starts the next word and carries its tag, as in fine-tuning,
    which labels each word's first piece. Lazily: a word is given once the next begins, so a long text's words
    need not all be held."""
    word: dict[str, Any] | None = None
    count = 0
    pending: dict[str, Any] | None = None  # a lone ▁: its tag waits for the word's characters
    for p in pieces:
        s, e = p["start"], p["end"]
        if e <= s:
            continue
        if not text[s:e].strip():
            pending = p
            continue
        if pending is None and word is not None and s == word["end"]:  # the same word, continued
            word["end"] = e
            continue
        if word is not None:
            yield word
        first = pending if pending is not None else p
        start = s + (len(text[s:e]) - len(text[s:e].lstrip()))  # a leading ▁ may cover the space before the word
        count += 1
        word = {"entity": first["entity"], "score": first["score"], "index": count, "start": start, "end": e}
        pending = None
    if word is not None:
        yield word


def group_entities(tokens: Iterable[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """Tagged pieces (or words) → entities, as transformers' "simple" aggregation: a B-/I- run of one kind is one
    entity (a piece continuing a word joins it too), scored by the mean of its pieces' scores."""
    return list(iter_entities(tokens, text))


def iter_entities(tokens: Iterable[dict[str, Any]], text: str) -> Iterator[dict[str, Any]]:
    """group_entities lazily: an entity is given once the next begins, so a long text's tagged words are never all
    held, only its entities (and those only by a caller that keeps them)."""
    group: dict[str, Any] | None = None
    for tok in tokens:
        prefix, _, kind = tok["entity"].partition("-")
        kind = kind or prefix
        same = group is not None and group["entity_group"] == kind and tok["index"] == group["_last"] + 1
        # a B- starts a new entity, except for a continuation piece of the same word (no space before it)
        if group is not None and same and (prefix != "B" or tok["start"] == group["end"]):
            group["end"], group["_last"] = tok["end"], tok["index"]
            group["_sum"] += tok["score"]
            group["_n"] += 1
            continue
        if group is not None:
            yield _entity(group, text)
        group = {"entity_group": kind, "start": tok["start"], "end": tok["end"], "_last": tok["index"],
                 "_sum": tok["score"], "_n": 1}
    if group is not None:
        yield _entity(group, text)


def _entity(group: dict[str, Any], text: str) -> dict[str, Any]:
    return {"entity_group": group["entity_group"], "score": group["_sum"] / group["_n"],
            "word": text[group["start"]:group["end"]], "start": group["start"], "end": group["end"]}


class Entities(Sequence[dict[str, Any]]):
    """A long text's entities (or tagged pieces), held as columns: a few bytes each where a dict costs ~370 (a text of
    millions of characters has hundreds of thousands; as dicts they outweighed the rest of `albert tag`'s memory).
    Each is made a dict again when read, equal to the one appended: strings by a code, numbers in arrays, and the
    `word` as the text's characters from `start` to `end`, which it always is. Equal to a list of those dicts;
    `list(entities)` makes one (json.dumps takes lists; albert.io.files.json_pieces takes either)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.keys: tuple[str, ...] = ()
        self.columns: dict[str, array[Any]] = {}
        self.names: list[str] = []  # the strings a string column's codes stand for
        self.codes: dict[str, int] = {}

    def append(self, entity: dict[str, Any]) -> None:
        if not self.keys:
            self.keys = tuple(entity)
            self.columns = {k: array("d" if isinstance(v, float) else "q" if isinstance(v, int) else "l")
                            for k, v in entity.items() if k != "word"}
        for key, column in self.columns.items():
            column.append(self._code(entity[key]) if column.typecode == "l" else entity[key])

    def _code(self, name: str) -> int:
        if name not in self.codes:
            self.codes[name] = len(self.names)
            self.names.append(name)
        return self.codes[name]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError("entity index out of range")
        out: dict[str, Any] = {}
        for key in self.keys:  # in the order appended; `word` filled below, from `start` and `end`
            column = self.columns.get(key)
            out[key] = None if column is None else self.names[column[i]] if column.typecode == "l" else column[i]
        if "word" in out:
            out["word"] = self.text[out["start"]:out["end"]]
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]


def tag_set(path: str | Path) -> list[str]:
    listed = listed_labels(path)
    if listed:
        return listed
    tags = sorted({t for s in read_tagged(path) for t in (s.tags or [])})
    if "O" in tags:
        tags.remove("O")
        tags.insert(0, "O")
    return tags
