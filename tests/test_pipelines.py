"""Pipelines on models fine-tuned in the tests: shapes, orders, offsets and agreement with the task code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import albert
from albert.errors import CheckpointError
from albert.io.files import json_pieces
from albert.tasks.batching import buckets, length_batches
from albert.tasks.tokens import Entities
from albert.train.finetune import finetune
from albert.train.finetune_settings import FinetuneSettings

FIX = Path(__file__).parent / "fixtures"


def tuned(tiny_model: Path, tmp: Path, task: str, data: Path, **kw) -> Path:
    return finetune(FinetuneSettings(task=task, train=str(data), model=str(tiny_model), out=str(tmp / task),
                                     max_seq_length=64, batch_size=8, max_steps=3, precision="fp32", progress=False,
                                     num_threads=1, **kw))


def test_feature_extraction_batches_like_single_calls(tiny_model: Path) -> None:
    fe = albert.pipeline("feature-extraction", model=tiny_model, precision="fp32")
    texts = ["a short one", "a much longer sentence about the white whale and the sea", "mid length text"]
    batched = fe(texts, pooling="mean", normalize=True)
    for t, v in zip(texts, batched):  # length bucketing restores the input order
        single = fe(t, pooling="mean", normalize=True)
        assert torch.allclose(torch.tensor(single), torch.tensor(v), atol=1e-5)
    assert abs(torch.tensor(batched[0]).norm().item() - 1) < 1e-5
    assert len(fe("x")) == albert.AlbertConfig.from_json_file(tiny_model / "config.json").hidden_size


def test_a_batch_of_long_texts_holds_fewer_rows() -> None:
    lengths = [512] * 12 + [16] * 40 + [128] * 40 + [4096]
    batches = buckets(lengths, 32, 32 * 128)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # every row once
    assert [len(b) for b in batches] == [32, 32, 16, 8, 4, 1]  # by length: 8 rows of 512; one too long alone
    assert all(len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 32 * 128 for b in batches)
    assert buckets([], 32, 4096) == [] and buckets([5, 3], 32) == [[1, 0]]
    # as model calls (every engine, fill-mask's included): lengths rounded up to a step of 16, then the budget
    calls = length_batches([5] * 40 + [300] * 10, 512, 32)
    assert [(len(idx), length) for idx, length in calls] == [(32, 16), (8, 16), (8, 304), (2, 304)]
    assert length_batches([511], 512, 32) == [([0], 512)]  # never past the model's limit


def test_text_classification_and_sentence_order(tiny_model: Path, tmp_path: Path) -> None:
    rows = [{"text": line, "label": i % 2} for i, line in
            enumerate((FIX / "public_domain.txt").read_text().splitlines()[:40]) if line]
    data = tmp_path / "clf.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    clf = albert.pipeline("text-classification", model=tuned(tiny_model, tmp_path, "classification", data),
                          precision="fp32")
    one = clf("Call me Ishmael.")
    assert set(one) == {"label", "score"} and one["label"] in ("0", "1")
    both = clf(["a", "b"], top_k=None)
    assert len(both) == 2 and abs(sum(x["score"] for x in both[0]) - 1) < 1e-5
    sop = albert.pipeline("sentence-order", model=tiny_model, precision="fp32")
    r = sop({"first": "Call me Ishmael.", "second": "Some years ago I went to sea."})
    assert r["label"] in ("in_order", "swapped") and 0.5 <= r["score"] <= 1


def test_question_answering_spans_point_into_context(tiny_model: Path, tmp_path: Path) -> None:
    qa = albert.pipeline("question-answering", model=tuned(tiny_model, tmp_path, "qa", FIX / "wordnet_qa.jsonl"),
                         precision="fp32")
    rows = [json.loads(x) for x in (FIX / "wordnet_qa.jsonl").read_text().splitlines()[:5]]
    one = qa(question=rows[0]["question"], context=rows[0]["context"], max_seq_length=64, doc_stride=16)
    assert one["answer"] == rows[0]["context"][one["start"]:one["end"]] and 0 <= one["score"] <= 1
    many = qa([{"question": r["question"], "context": r["context"]} for r in rows], max_seq_length=64)
    assert len(many) == 5 and all(m["answer"] == r["context"][m["start"]:m["end"]] for m, r in zip(many, rows))


def test_token_classification_entities(toy_models: dict[str, tuple[Path, Path]]) -> None:
    """The toy tagger (numbers are B-NUM): entities point into the text, grouped or per token; both loops run."""
    tag = albert.pipeline("token-classification", model=toy_models["token-classification"][0], precision="fp32")
    text = "the whale swam 42 miles and then 17 more"
    entities = tag(text)
    assert [e["word"] for e in entities] == ["42", "17"], entities
    for ent in entities:
        assert ent["word"] == text[ent["start"]:ent["end"]] and ent["entity_group"] == "NUM"
    tokens = tag(text, aggregation_strategy="none")
    assert tokens
    for tok in tokens:
        assert tok["word"] == text[tok["start"]:tok["end"]]


def test_multiple_choice(tiny_model: Path, tmp_path: Path) -> None:
    model = tuned(tiny_model, tmp_path, "multiple-choice", FIX / "wordnet_cloze.jsonl")
    mc = albert.pipeline("multiple-choice", model=model, precision="fp32")
    r = mc({"article": "a piece of furniture", "question": "he sat on the _", "options": ["chair", "sky", "idea"]})
    assert r["label"] in (0, 1, 2) and len(r["scores"]) == 3 and abs(sum(r["scores"]) - 1) < 1e-4


def test_inference_cli(tiny_model: Path, with_head, tmp_path: Path, albert_cli: Any) -> None:
    """embed (once as a real process), choose and answer through the CLI's entry point."""
    import subprocess
    import sys

    def process(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "albert.cli", *args], input=stdin, capture_output=True,
                              text=True, timeout=120)

    cli = albert_cli
    out = process("embed", "--model", str(tiny_model), "--precision", "fp32", stdin="first line\nsecond line\n")
    assert out.returncode == 0, out.stderr
    vectors = [json.loads(x) for x in out.stdout.splitlines()]
    assert len(vectors) == 2 and len(vectors[0]) == 64
    jl = tmp_path / "in.jsonl"
    jl.write_text('{"text": "one"}\n{"text": "two"}\n{"text": "three"}\n')
    out = cli("embed", "--file", str(jl), "--model", str(tiny_model), "--pooling", "mean", "--normalize")
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 3
    bad = cli("embed", "--file", str(tmp_path / "missing.jsonl"), "--model", str(tiny_model))
    assert bad.returncode == 2 and bad.stderr.startswith("albert: error:")
    out = cli("choose", "--model", str(tiny_model), "--question", "q _", "--options", "only")
    assert out.returncode == 2 and "two" in out.stderr
    # answer and choose read JSON objects from stdin, one per line, as from --file
    qa = ('{"question": "who ran?", "context": "the whale ran to the sea."}\n'
          '{"question": "where?", "context": "at sea."}\n')
    out = cli("answer", "--model", str(with_head("question-answering")), "--precision", "fp32", stdin=qa)
    assert out.returncode == 0, out.stderr
    answers = [json.loads(x) for x in out.stdout.splitlines()]
    assert len(answers) == 2 and answers[0]["answer"] in "the whale ran to the sea."
    mc = '{"article": "a b", "question": "q _", "options": ["x", "y", "z"]}\n'
    out = cli("choose", "--model", str(with_head("multiple-choice")), "--precision", "fp32", stdin=mc)
    assert out.returncode == 0 and len(json.loads(out.stdout)["scores"]) == 3, out.stderr
    bad = cli("answer", "--model", str(tiny_model), stdin="who ran?\n")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("albert: error: <stdin>:1 (one JSON object per line)")


def test_a_checkpoint_without_the_task_head_is_refused(tiny_model: Path) -> None:
    """A pretrained model has no classifier: a pipeline built on it would answer with a random head."""
    import subprocess
    import sys

    for task, cls in (("text-classification", "AlbertForSequenceClassification"),
                      ("question-answering", "AlbertForQuestionAnswering"),
                      ("multiple-choice", "AlbertForMultipleChoice"),
                      ("token-classification", "AlbertForTokenClassification")):
        with pytest.raises(CheckpointError, match=f"no weights for {cls}'s .*not trained for this task"):
            albert.pipeline(task, model=tiny_model)
    albert.pipeline("feature-extraction", model=tiny_model)  # reads no head (and no pooler)
    with pytest.raises(CheckpointError, match="AlbertForTokenClassification"):
        albert.pipeline("ner", model=tiny_model)  # transformers' name for token-classification
    out = subprocess.run([sys.executable, "-m", "albert.cli", "classify", "a text", "--model", str(tiny_model)],
                         capture_output=True, text=True, timeout=120)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and "not trained for this task" in lines[0], out.stderr


def test_token_classification_tags_texts_longer_than_the_model(with_head) -> None:
    """Past max_position_embeddings the text is tagged in overlapping windows: every piece gets a tag (the head
    is untrained, so every piece is an entity here), in order, with offsets into the text; a text that fits is
    tagged in one window exactly as before."""
    tag = albert.pipeline("token-classification", model=with_head("token-classification"), precision="fp32")
    limit = tag.model.config.max_position_embeddings
    text = " ".join(f"the whale number {i} swam on." for i in range(60))
    pieces = tag.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(pieces) > 2 * limit
    tokens = tag(text, aggregation_strategy="none")
    assert [t["index"] for t in tokens] == list(range(1, len(pieces) + 1))
    assert all(t["word"] == text[t["start"]:t["end"]] for t in tokens)
    assert [t["start"] for t in tokens] == sorted(t["start"] for t in tokens)
    # each piece's tag is that of the window (the tokenizer's own overlapping windows) where it has most context
    stride = (limit - 2) // 2
    enc = tag.tokenizer(text, truncation=True, max_length=limit, stride=stride, return_overflowing_tokens=True)
    best: dict[int, tuple[int, int]] = {}
    for w, ids in enumerate(enc["input_ids"]):
        with torch.inference_mode():
            predicted = tag.model(input_ids=torch.tensor([ids])).logits[0, 1:-1].argmax(-1).tolist()
        for j, label in enumerate(predicted):
            piece, context = w * (limit - 2 - stride) + j, min(j, len(predicted) - 1 - j)
            if piece not in best or context > best[piece][0]:
                best[piece] = (context, label)
    assert [t["entity"] for t in tokens] == [str(best[i][1]) for i in range(len(pieces))]
    # what the CLI and the server write: the same answers held as columns, written as json.dumps writes the lists
    for strategy in ("none", "first", "simple"):
        compact, listed = tag.compact(text, aggregation_strategy=strategy), tag(text, aggregation_strategy=strategy)
        assert isinstance(compact, Entities) and isinstance(listed, list) and len(listed) > 0
        assert compact == listed and list(compact) == listed and compact[-2:] == listed[-2:]
        assert "".join(json_pieces([compact, compact], per=7)) == json.dumps([listed, listed], ensure_ascii=False)
    short = "the whale swam on."
    ids = tag.tokenizer(short)["input_ids"]
    with torch.inference_mode():
        logits = tag.model(input_ids=torch.tensor([ids])).logits[0, 1:-1].softmax(-1)
    got = tag(short, aggregation_strategy="none")
    assert [t["entity"] for t in got] == [str(int(i)) for i in logits.argmax(-1)]
    assert all(abs(t["score"] - float(p)) < 1e-5 for t, p in zip(got, logits.max(-1).values))


def test_entities_held_as_columns_read_as_the_dicts_appended() -> None:
    """albert.tasks.tokens.Entities: empty, it is an empty list (json too); filled, each read is the dict appended,
    by index (negative too), slice and iteration, and an index past the end is an IndexError."""
    empty = Entities("no entity here")
    assert list(empty) == [] and empty == [] and "".join(json_pieces([empty, empty])) == "[[], []]"
    text = "Ahab met Starbuck in Nantucket."
    appended = [{"entity_group": "PER", "score": 0.5, "word": "Ahab", "start": 0, "end": 4},
                {"entity_group": "PER", "score": 0.25, "word": "Starbuck", "start": 9, "end": 17},
                {"entity_group": "LOC", "score": 0.125, "word": "Nantucket", "start": 21, "end": 30}]
    held = Entities(text)
    for entity in appended:
        held.append(entity)
    assert held == appended and list(held) == appended and held[-1] == appended[-1] and held[1:] == appended[1:]
    assert "".join(json_pieces(held, per=2)) == json.dumps(appended)
    with pytest.raises(IndexError):
        held[3]
