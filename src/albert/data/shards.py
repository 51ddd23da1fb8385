"""Tokenized corpora on disk: shards that memory-map, so corpora larger than RAM stream.

A prepared data directory holds `train/` and `eval/`, each with shards `NNNNN.tokens` (token ids,
uint16 or int32), `NNNNN.sentences.npy` (offsets of sentences into the tokens) and
`NNNNN.documents.npy` (offsets of documents into the sentences); `meta.json` describes it all and
`tokenizer/` holds the tokenizer used.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing as mp
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from albert.errors import DataError
from albert.io.files import iter_documents, read_model_json
from albert.io.output_dirs import claim_output
from albert.tokenization.tokenizer import AlbertTokenizer

logger = logging.getLogger(__name__)

META = "meta.json"
DOCS_PER_SHARD = 20_000


@dataclass
class Shard:
    tokens: np.ndarray  # (N,) token ids, memory-mapped
    sentences: np.ndarray  # (S+1,) offsets into tokens
    documents: np.ndarray  # (D+1,) offsets into sentences

    @property
    def num_documents(self) -> int:
        return len(self.documents) - 1

    def document(self, d: int) -> list[np.ndarray]:
        s0, s1 = int(self.documents[d]), int(self.documents[d + 1])
        return [self.tokens[self.sentences[s]:self.sentences[s + 1]] for s in range(s0, s1)]


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65535 else np.dtype(np.int32)


def write_shard(path: Path, docs: Sequence[Sequence[Sequence[int]]], vocab_size: int) -> int:
    """Write one shard atomically (temp files, then rename); returns the number of tokens."""
    sent_lens = [len(s) for d in docs for s in d]
    sentences = np.zeros(len(sent_lens) + 1, dtype=np.int64)
    np.cumsum(sent_lens, out=sentences[1:])
    documents = np.zeros(len(docs) + 1, dtype=np.int64)
    np.cumsum([len(d) for d in docs], out=documents[1:])
    tokens = np.fromiter((t for d in docs for s in d for t in s), dtype=token_dtype(vocab_size),
                         count=int(sentences[-1]))
    for suffix, array in ((".sentences.npy", sentences), (".documents.npy", documents)):
        tmp = path.with_name(path.name + suffix + ".tmp")
        with open(tmp, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path.with_name(path.name + suffix))
    tmp = path.with_name(path.name + ".tokens.tmp")
    tokens.tofile(tmp)
    os.replace(tmp, path.with_name(path.name + ".tokens"))
    return int(sentences[-1])


def read_shard(path: Path, vocab_size: int) -> Shard:
    try:
        sentences = np.load(path.with_name(path.name + ".sentences.npy"), mmap_mode="r")
        documents = np.load(path.with_name(path.name + ".documents.npy"), mmap_mode="r")
        tokens_path = path.with_name(path.name + ".tokens")
        dtype = token_dtype(vocab_size)
        size = tokens_path.stat().st_size
        if size != int(sentences[-1]) * dtype.itemsize:
            raise DataError(f"shard {tokens_path} is truncated or corrupt ({size} bytes, expected "
                            f"{int(sentences[-1]) * dtype.itemsize})")
        tokens = np.memmap(tokens_path, dtype=dtype, mode="r") if size else np.zeros(0, dtype)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read shard {path}: {e}") from None
    if int(documents[-1]) != len(sentences) - 1:
        raise DataError(f"shard {path} is corrupt (documents and sentences disagree)")
    return Shard(tokens, sentences, documents)


@dataclass
class Corpus:
    """The shards of one split, as one list of documents."""

    shards: list[Shard]

    @classmethod
    def open(cls, data_dir: str | Path, split: str) -> Corpus:
        data_dir = Path(data_dir)
        meta = read_meta(data_dir)
        names = meta["splits"].get(split)
        if names is None:
            raise DataError(f"{data_dir}: no split {split!r} (have {', '.join(meta['splits'])})")
        shards = [read_shard(data_dir / split / name, meta["vocab_size"]) for name in names]
        return cls(shards)

    def documents(self) -> Iterator[list[np.ndarray]]:
        for shard in self.shards:
            for d in range(shard.num_documents):
                yield shard.document(d)

    @property
    def num_documents(self) -> int:
        return sum(s.num_documents for s in self.shards)

    @property
    def num_tokens(self) -> int:
        return sum(int(s.sentences[-1]) for s in self.shards)


def read_meta(data_dir: Path) -> dict:
    """A prepared directory's meta.json, checked: an object with the vocabulary's size (a positive integer) and
    its splits (each a list of shard names, plain file names inside the directory); each fault one line."""
    path = data_dir / META
    if not path.exists():
        raise DataError(f"{data_dir} is not a prepared data directory (no {META}; run `albert data prepare`)")
    meta = read_model_json(path)
    if not isinstance(meta, dict):
        raise DataError(f"{path}: must be a JSON object (as `albert data prepare` writes it)")
    vocab, splits = meta.get("vocab_size"), meta.get("splits")
    if type(vocab) is not int or vocab < 1:
        raise DataError(f"{path}: vocab_size must be a positive integer, got {str(vocab)[:40]!r}")
    if not isinstance(splits, dict) or not all(
            isinstance(names, list) and all(isinstance(n, str) and n and Path(n).name == n and n not in (".", "..")
                                            for n in names) for names in splits.values()):
        raise DataError(f"{path}: splits must map each split to a list of shard file names")
    return meta


# ----- preparation -----
_worker_tokenizer: AlbertTokenizer | None = None


def _init_worker(tokenizer_dir: str) -> None:
    global _worker_tokenizer
    _worker_tokenizer = AlbertTokenizer.from_pretrained(tokenizer_dir)


def _tokenize_shard(job: tuple[Path, list[list[str]], int]) -> tuple[str, str, int, int]:
    path, docs, vocab_size = job
    assert _worker_tokenizer is not None
    flat = [line for d in docs for line in d]
    encoded = _worker_tokenizer.encode_pieces(flat, num_threads=1)
    out: list[list[list[int]]] = []
    k = 0
    for d in docs:
        sents = [encoded[k + i].ids for i in range(len(d))]
        k += len(d)
        sents = [s for s in sents if s]
        if sents:
            out.append(sents)
    n_tokens = write_shard(path, out, vocab_size)
    return path.parent.name, path.name, len(out), n_tokens


def _write_shards(inputs: Sequence[str | Path], tokenizer: AlbertTokenizer, out: Path, eval_fraction: float,
                  workers: int, seed: int, field: str, docs_per_shard: int, progress: bool
                  ) -> tuple[dict[str, list[str]], dict[str, list[int]]]:
    """Tokenize the documents into out/train and out/eval shards, `workers` processes at once; (shard names,
    [documents, tokens]) per split."""
    for split in ("train", "eval"):
        (out / split).mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out / "tokenizer")
    rng = random.Random(seed)
    pending: dict[str, list[list[str]]] = {"train": [], "eval": []}
    counters = {"train": 0, "eval": 0}
    shards: dict[str, list[str]] = {"train": [], "eval": []}
    totals = {"train": [0, 0], "eval": [0, 0]}  # documents, tokens

    def jobs() -> Iterator[tuple[Path, list[list[str]], int]]:
        for path in inputs:
            for doc in iter_documents(path, field):
                split = "eval" if rng.random() < eval_fraction else "train"
                pending[split].append(doc)
                if len(pending[split]) >= docs_per_shard:
                    yield _job(split)
        for split in ("train", "eval"):
            if pending[split]:
                yield _job(split)

    def _job(split: str) -> tuple[Path, list[list[str]], int]:
        name = f"{counters[split]:05d}"
        counters[split] += 1
        docs, pending[split] = pending[split], []
        return out / split / name, docs, tokenizer.vocab_size

    bar = tqdm(desc="tokenizing", unit=" docs", disable=not progress)
    with contextlib.ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(mp.get_context("spawn").Pool(
                workers, initializer=_init_worker, initargs=(str(out / "tokenizer"),)))
            results: Iterator[tuple[str, str, int, int]] = pool.imap(_tokenize_shard, jobs())
        else:
            _init_worker(str(out / "tokenizer"))
            results = map(_tokenize_shard, jobs())
        for split, name, n_docs, n_tokens in results:
            shards[split].append(name)
            totals[split][0] += n_docs
            totals[split][1] += n_tokens
            bar.update(n_docs)
    bar.close()
    if totals["train"][1] == 0:
        raise DataError("the corpus is empty: no text found in " + ", ".join(map(str, inputs)))
    return shards, totals


def prepare_data(
    inputs: Sequence[str | Path],
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    eval_fraction: float = 0.01,
    workers: int = 0,
    seed: int = 0,
    field: str = "text",
    docs_per_shard: int = DOCS_PER_SHARD,
    progress: bool = True,
) -> dict:
    """Tokenize raw text into train/eval shards; whole documents go to eval with probability eval_fraction."""
    if not 0.0 <= eval_fraction < 1.0:
        raise DataError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    for p in inputs:
        if not Path(p).is_file():
            raise DataError(f"{p}: no such file")
    tokenizer = AlbertTokenizer.from_pretrained(tokenizer_dir)
    out = Path(out_dir)
    workers = workers or max(1, (os.cpu_count() or 1))
    # failed or interrupted: nothing is left behind (not resumable; a rerun clears a killed run's leftovers)
    with claim_output(out, "data prepare") as staging:
        shards, totals = _write_shards(inputs, tokenizer, staging, eval_fraction, workers, seed, field,
                                       docs_per_shard, progress)
        _write_meta(staging, tokenizer, shards, totals, inputs, eval_fraction, seed)
    return read_meta(out)


def _write_meta(out: Path, tokenizer: AlbertTokenizer, shards: dict[str, list[str]], totals: dict[str, list[int]],
                inputs: Sequence[str | Path], eval_fraction: float, seed: int) -> None:
    meta = {
        "vocab_size": tokenizer.vocab_size,
        "splits": {k: sorted(v) for k, v in shards.items()},
        "documents": {k: v[0] for k, v in totals.items()},
        "tokens": {k: v[1] for k, v in totals.items()},
        "inputs": [str(p) for p in inputs],
        "eval_fraction": eval_fraction,
        "seed": seed,
    }
    (out / META).write_text(json.dumps(meta, indent=2) + "\n")

