"""Pretraining examples: segment pairs, SOP labels and n-gram whole-word masking, checked by statistics."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from albert.data.pretraining import ExampleSettings, Masker, PretrainingStream, create_segment_pairs, truncate_pair
from albert.data.shards import Corpus, prepare_data
from albert.errors import DataError


@pytest.fixture(scope="module")
def stats(tokenizer, prepared_data: Path) -> dict:
    settings = ExampleSettings(max_seq_length=128)
    masker = Masker(tokenizer, settings)
    stream = PretrainingStream(Corpus.open(prepared_data, "train"), masker, settings, seed=7)
    examples, epoch = [], 0
    while len(examples) < 10_000:
        examples.extend(ex for _, ex in stream.examples(epoch))
        epoch += 1
    return {"examples": examples[:10_000], "masker": masker, "tokenizer": tokenizer}


def test_mask_rate_is_15_percent(stats) -> None:
    ex = stats["examples"]
    rate = sum(len(e.mlm_positions) for e in ex) / sum(len(e.input_ids) for e in ex)
    assert abs(rate - 0.15) < 0.005, rate


def test_ngram_shares(stats) -> None:
    sizes = Counter(n for e in stats["examples"] for n in e.ngram_sizes)
    total = sum(sizes.values())
    for n, expected in ((1, 0.545), (2, 0.273), (3, 0.182)):
        assert abs(sizes[n] / total - expected) < 0.03, (n, sizes[n] / total)


def test_80_10_10(stats) -> None:
    tok = stats["tokenizer"]
    kinds = Counter()
    for e in stats["examples"]:
        for p, label in zip(e.mlm_positions, e.mlm_labels):
            t = e.input_ids[p]
            kinds["mask" if t == tok.mask_token_id else "same" if t == label else "random"] += 1
            assert t not in (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id)
            assert label not in (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id, tok.mask_token_id)
    total = sum(kinds.values())
    assert abs(kinds["mask"] / total - 0.8) < 0.01
    assert abs(kinds["random"] / total - 0.1) < 0.01
    assert abs(kinds["same"] / total - 0.1) < 0.01


def test_sop_labels_balanced_and_segments_well_formed(stats) -> None:
    tok = stats["tokenizer"]
    ex = stats["examples"]
    assert abs(np.mean([e.sop_label for e in ex]) - 0.5) < 0.02
    for e in ex[:2000]:
        ids = e.input_ids
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id and len(ids) <= 128
        seps = np.flatnonzero(ids == tok.sep_token_id)
        assert len(seps) == 2 and seps[0] > 1 and seps[1] > seps[0] + 1  # both segments non-empty
        assert (e.token_type_ids[: seps[0] + 1] == 0).all() and (e.token_type_ids[seps[0] + 1:] == 1).all()


def test_word_pieces_masked_together(stats) -> None:
    masker = stats["masker"]
    for e in stats["examples"][:3000]:
        original = e.input_ids.copy()
        original[e.mlm_positions] = e.mlm_labels
        masked = set(e.mlm_positions.tolist())
        for p in masked:
            if p + 1 < len(original) and p + 1 not in masked:
                nxt = original[p + 1]
                assert masker.is_word_start[nxt] or nxt == masker.sep_id, "a word was cut after its masked piece"
            if not masker.is_word_start[original[p]] and original[p - 1] not in (masker.cls_id, masker.sep_id):
                assert p - 1 in masked, "a continuation piece was masked without its word start"


def test_masking_is_deterministic_and_dynamic(tokenizer, prepared_data: Path) -> None:
    settings = ExampleSettings(max_seq_length=64)
    masker = Masker(tokenizer, settings)
    stream = PretrainingStream(Corpus.open(prepared_data, "train"), masker, settings, seed=3)
    first = [ex.input_ids for _, ex in zip(range(50), (e for _, e in stream.examples(0)))]
    again = [ex.input_ids for _, ex in zip(range(50), (e for _, e in stream.examples(0)))]
    other = [ex.input_ids for _, ex in zip(range(50), (e for _, e in stream.examples(1)))]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(len(a) == len(b) and np.array_equal(a, b) for a, b in zip(first, other))
    # resuming mid-epoch gives the same examples
    tail = [ex.input_ids for _, ex in zip(range(10), (e for _, e in stream.examples(0, start=40)))]
    assert all(np.array_equal(a, b) for a, b in zip(first[40:], tail))


def test_shuffled_order_mixes_shards(tokenizer, prepared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import albert.data.pretraining as pretraining

    monkeypatch.setattr(pretraining, "WINDOW_DOCUMENTS", 16)
    corpus = Corpus.open(prepared_data, "train")
    assert len(corpus.shards) >= 3
    settings = ExampleSettings(max_seq_length=64)
    stream = PretrainingStream(corpus, Masker(tokenizer, settings), settings, seed=5)
    # the permutation covers every document once, and one window draws from several shards
    docs = np.random.default_rng([5, 0, 1 << 21]).permutation(corpus.num_documents)
    assert sorted(docs.tolist()) == list(range(corpus.num_documents))
    assert len(set(np.searchsorted(stream._doc_starts, docs[:16], side="right") - 1)) >= 2
    windows = list(stream._windows(0))
    assert len(windows) == -(-corpus.num_documents // 16)
    # resuming inside a later window gives the same pairs
    full = [p for _, p in zip(range(60), stream.epoch_pairs(0))]
    tail = [p for _, p in zip(range(20), stream.epoch_pairs(0, start=40))]
    assert all(np.array_equal(x.a, y.a) and x.sop_label == y.sop_label for (_, x), (_, y) in zip(full[40:], tail))


def test_pairs_and_truncation() -> None:
    rng = np.random.default_rng(0)
    doc = [np.arange(i * 10, i * 10 + 7) for i in range(12)]
    pairs = create_segment_pairs(doc, max_num_tokens=29, short_seq_prob=0.0, rng=rng)
    assert pairs and all(len(p.a) + len(p.b) <= 29 and len(p.a) and len(p.b) for p in pairs)
    for p in pairs:  # label 0: A precedes B in the text; 1: swapped
        assert (p.a[-1] < p.b[0]) == (p.sop_label == 0)
    a, b = truncate_pair(np.arange(50), np.arange(10), 20, rng)
    assert len(a) + len(b) == 20 and len(b) == 10
    one_long_line = [np.arange(300)]
    pairs = create_segment_pairs(one_long_line, max_num_tokens=125, short_seq_prob=0.0, rng=rng)
    assert sum(len(p.a) + len(p.b) for p in pairs) >= 296  # long lines are cut, not truncated away


def test_prepare_errors(tokenizer_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="empty"):
        prepare_data([empty], tokenizer_dir, tmp_path / "out", workers=1, progress=False)
    with pytest.raises(DataError, match="no such file"):
        prepare_data([tmp_path / "missing.txt"], tokenizer_dir, tmp_path / "out2", workers=1, progress=False)


def test_formats_and_corrupt_shard(tokenizer_dir: Path, tmp_path: Path, text_lines) -> None:
    import gzip
    import json
    import lzma

    docs = [text_lines[i:i + 5] for i in range(0, 100, 5)]
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(
        "".join(json.dumps({"text": "\n".join(d)}) + "\n" for d in docs).encode()))
    (tmp_path / "b.txt.xz").write_bytes(lzma.compress("\n\n".join("\n".join(d) for d in docs).encode()))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["\n".join(d) for d in docs]}), tmp_path / "c.parquet")
    metas = [prepare_data([tmp_path / name], tokenizer_dir, tmp_path / f"out_{i}", eval_fraction=0.0, workers=1,
                          progress=False) for i, name in enumerate(["a.jsonl.gz", "b.txt.xz", "c.parquet"])]
    assert metas[0]["tokens"] == metas[1]["tokens"] == metas[2]["tokens"]
    assert metas[0]["documents"]["train"] == 20
    shard = tmp_path / "out_0" / "train" / "00000.tokens"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated or corrupt"):
        Corpus.open(tmp_path / "out_0", "train")


@pytest.mark.parametrize("extra", [{}, {"packing": True, "batch_ramp_steps": 6}], ids=["padded", "packed-ramp"])
def test_data_workers_build_the_same_batches(prepared_data: Path, extra: dict) -> None:
    """Batches built ahead in worker processes equal the one-process ones, across a pool boundary and a resume
    (padded, and packed rows with a batch ramp, whose steps straddle pool batches)."""
    import torch

    from albert.modeling.config import AlbertConfig
    from albert.tokenization.tokenizer import AlbertTokenizer
    from albert.train.pretrain import PretrainTask
    from albert.train.settings import PretrainSettings

    tokenizer = AlbertTokenizer.from_pretrained(prepared_data / "tokenizer")

    def steps(workers: int, n: int, resume_at: int = 0) -> list[list[dict[str, torch.Tensor]]]:
        settings = PretrainSettings(data=str(prepared_data), batch_size=8, max_seq_length=64, data_workers=workers,
                                    **extra)
        config = AlbertConfig.from_preset("albert-tiny", vocab_size=tokenizer.vocab_size)
        task = PretrainTask(settings, tokenizer, config)
        try:
            if resume_at:
                first = PretrainTask(settings, tokenizer, config)
                for step in range(resume_at):
                    first.step_batches(step, 0, 1, 4)
                task.load_data_state(first.data_state())
                first.close()
            return [task.step_batches(step, 0, 1, 4) for step in range(resume_at, n)]
        finally:
            task.close()

    n = PretrainTask.POOL_STEPS + 3
    plain, ahead, resumed = steps(0, n), steps(2, n), steps(2, n, resume_at=PretrainTask.POOL_STEPS - 2)
    assert len(plain[0]) == (1 if extra else 2)  # two micro-batches of 4 per step; one on the ramp's first
    assert len(plain[-1]) == 2
    for a, b in zip(plain, ahead):
        assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)
    for a, b in zip(plain[PretrainTask.POOL_STEPS - 2:], resumed):
        assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)
