"""Fine-tuning through the one loop: classification, regression, multi-label; evaluate/predict; errors.

Data: paragraphs of the committed public-domain text, labelled by their source (Moby-Dick or a State
of the Union address) — real text with a real label.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import albert
from albert.errors import ConfigError, DataError
from albert.train.finetune import evaluate_dir, finetune, predict_dir
from albert.train.finetune_settings import RECIPES, FinetuneSettings, finetune_settings

FIXTURE = Path(__file__).parent / "fixtures" / "public_domain.txt"


@pytest.fixture(scope="module")
def source_task(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    lines = FIXTURE.read_text(encoding="utf-8").splitlines()
    split = next(i for i, line in enumerate(lines) if line.startswith("Fellow-Citizens"))
    rows = [{"text": line[:200], "label": "moby" if i < split else "sotu"}
            for i, line in enumerate(lines) if len(line) > 40]
    moby = [r for r in rows if r["label"] == "moby"][:150]
    sotu = [r for r in rows if r["label"] == "sotu"][:150]
    train = [r for pair in zip(moby[:120], sotu[:120]) for r in pair]
    dev = moby[120:] + sotu[120:]
    d = tmp_path_factory.mktemp("task")
    for name, data in (("train.jsonl", train), ("dev.jsonl", dev)):
        (d / name).write_text("".join(json.dumps(r) + "\n" for r in data))
    return d / "train.jsonl", d / "dev.jsonl"


def settings(base: Path, train: Path, dev: Path | None, out: Path, **kw) -> FinetuneSettings:
    values = dict(task="classification", train=str(train), dev=str(dev) if dev else "", model=str(base),
                  out=str(out), max_seq_length=64, batch_size=16, max_steps=60, learning_rate=1e-3,
                  precision="fp32", progress=False, num_threads=1, seed=0)
    values.update(kw)
    return FinetuneSettings(**values)


def test_classification_learns_and_round_trips(tiny_model: Path, source_task, tmp_path: Path) -> None:
    train, dev = source_task
    out = finetune(settings(tiny_model, train, dev, tmp_path / "clf", max_steps=150))
    scores = json.loads((out / "dev_results.json").read_text())
    assert scores["accuracy"] >= 0.8, scores  # two very different sources
    assert evaluate_dir(out, dev, precision="fp32")["accuracy"] == pytest.approx(scores["accuracy"])
    preds = predict_dir(out, dev, precision="fp32")
    assert len(preds) == 60 and {p["label"] for p in preds} <= {"moby", "sotu"}
    # transformers loads it as the matching class, with the labels
    import transformers
    theirs = transformers.AlbertForSequenceClassification.from_pretrained(out).eval()
    assert theirs.config.id2label == {0: "moby", 1: "sotu"}
    from albert import AlbertForSequenceClassification, AlbertTokenizer

    ours = AlbertForSequenceClassification.from_pretrained(out)
    batch = AlbertTokenizer.from_pretrained(out)(["Call me Ishmael."], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch).logits, theirs(**batch).logits, atol=1e-5, rtol=1e-4)


def test_regression_and_multilabel(tiny_model: Path, source_task, tmp_path: Path) -> None:
    train, _ = source_task
    rows = [json.loads(x) for x in train.read_text().splitlines()]
    reg = tmp_path / "reg.jsonl"  # score: the share of the letter "e" (a real property of the text)
    reg.write_text("".join(json.dumps({"text": r["text"], "label": 10 * r["text"].count("e") / len(r["text"])})
                           + "\n" for r in rows))
    out = finetune(settings(tiny_model, reg, reg, tmp_path / "reg", task="regression", max_steps=30))
    assert set(json.loads((out / "dev_results.json").read_text())) == {"pearson", "spearman", "mse"}
    multi = tmp_path / "multi.jsonl"
    multi.write_text("".join(json.dumps({"text": r["text"], "label": [r["label"]] + (["long"] if len(r["text"]) > 150
                                                                                     else [])}) + "\n" for r in rows))
    out = finetune(settings(tiny_model, multi, multi, tmp_path / "multi", task="multi-label", max_steps=30))
    assert "micro_f1" in json.loads((out / "dev_results.json").read_text())
    # one output shape per task: predict gives what `albert classify` gives (every label ranked for multi-label)
    preds = predict_dir(out, multi, precision="fp32")
    assert all(isinstance(p, list) and {"label", "score"} == set(p[0]) for p in preds)
    classify = albert.pipeline("text-classification", model=out, precision="fp32")
    for got, want in zip(classify([{"text": r["text"]} for r in rows[:5]], top_k=None), preds[:5]):
        assert [g["label"] for g in got] == [w["label"] for w in want]
        assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], abs=1e-5)


def test_evaluate_and_predict_run_in_the_precision_asked_for(tiny_model: Path, source_task, tmp_path: Path) -> None:
    """int8 really runs int8 (it was silently fp32), as the pipelines run it, within the accuracy guard."""
    from albert.runtime.freeze import is_int8
    from albert.runtime.kernels import Int8Linear
    from albert.train.finetune import load_task_model

    train, dev = source_task
    out = finetune(settings(tiny_model, train, dev, tmp_path / "clf", max_steps=100))
    model, *_ = load_task_model(out, "cpu", "int8")
    assert is_int8(model) and isinstance(model.albert.encoder.prepared_weights[0][0].ffn_w, Int8Linear)
    fp32, int8 = evaluate_dir(out, dev, precision="fp32"), evaluate_dir(out, dev, precision="int8")
    assert abs(int8["accuracy"] - fp32["accuracy"]) <= 0.05, (fp32, int8)
    agree = [a["label"] == b["label"] for a, b in zip(predict_dir(out, dev, precision="fp32"),
                                                       predict_dir(out, dev, precision="int8"))]
    assert sum(agree) / len(agree) >= 0.95
    pipe = albert.pipeline("text-classification", model=out, precision="int8")
    assert is_int8(pipe.model)
    # activations are quantized per batch (padding included), so the same 8 rows go through both; short ones, which
    # predict (max_seq_length 64, as fine-tuned) and the pipeline (the model's limit) do not truncate
    few = tmp_path / "few.jsonl"
    few.write_text("".join([line for line in dev.read_text().splitlines(keepends=True)
                            if len(json.loads(line)["text"]) < 120][:8]))
    texts = [json.loads(line)["text"] for line in few.read_text().splitlines()]
    for got, want in zip(pipe(texts), predict_dir(out, few, precision="int8")):
        assert got["label"] == want["label"] and got["score"] == pytest.approx(want["score"], abs=1e-4)


def test_bad_rows_name_file_and_line(tiny_model: Path, source_task, tmp_path: Path) -> None:
    train, _ = source_task
    bad_label = tmp_path / "bad_label.jsonl"
    bad_label.write_text('{"text": "a", "label": "moby"}\n{"text": "b", "label": "sotu"}\n')
    unknown = tmp_path / "dev_unknown.jsonl"
    unknown.write_text('{"text": "a", "label": "moby"}\n\n{"text": "b", "label": "poetry"}\n')
    with pytest.raises(DataError, match=r"dev_unknown.jsonl:3: label 'poetry' is not in the label set"):
        finetune(settings(tiny_model, train, unknown, tmp_path / "x"))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "a", "label": "moby"}\n{"text": "b", "label": \n')
    with pytest.raises(DataError, match=r"broken.jsonl:2: invalid JSON"):
        finetune(settings(tiny_model, broken, None, tmp_path / "y"))
    wrong = tmp_path / "table.csv"
    wrong.write_text("a,b\n")
    with pytest.raises(DataError, match="unsupported format"):
        finetune(settings(tiny_model, wrong, None, tmp_path / "z"))


def test_settings_priority_recipe_then_file_then_command_line(tmp_path: Path) -> None:
    """The recipe's values hold unless the YAML file or the command line set them (the file's defaults once
    silently replaced the whole recipe); the file's model is kept when --model is not given."""
    (tmp_path / "s.yaml").write_text("warmup_steps: 7\nmodel: some/model\ntrain: t.jsonl\nout: o\n")
    s = finetune_settings({"task": "classification", "recipe": "rte", "model": None, "batch_size": 4},
                          tmp_path / "s.yaml")
    rte = RECIPES["rte"]
    assert (s.learning_rate, s.max_steps, s.max_seq_length) == (rte["learning_rate"], rte["max_steps"],
                                                                 rte["max_seq_length"])
    assert (s.warmup_steps, s.batch_size, s.model, s.train) == (7, 4, "some/model", "t.jsonl")
    (tmp_path / "r.yaml").write_text("recipe: mrpc\ntrain: t.jsonl\nout: o\n")
    assert finetune_settings({"task": "qa"}, tmp_path / "r.yaml").max_steps == RECIPES["mrpc"]["max_steps"]
    with pytest.raises(ConfigError, match="unknown recipe"):
        finetune_settings({"task": "qa", "recipe": "nope", "train": "t", "out": "o"})
    with pytest.raises(ConfigError, match="unknown setting"):
        finetune_settings({"task": "qa", "train": "t", "out": "o", "learning_rat": 1.0})


def test_cli_finetune_with_recipe_override(tiny_model: Path, source_task, tmp_path: Path, albert_cli: Any) -> None:
    train, dev = source_task
    out = subprocess.run([sys.executable, "-m", "albert.cli", "finetune", "--task", "classification", "--train",
                          str(train), "--dev", str(dev), "--model", str(tiny_model), "--out", str(tmp_path / "o"),
                          "--recipe", "mrpc", "--max_steps", "4", "--max_seq_length", "64", "--precision", "fp32",
                          "--progress", "false"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    saved = (tmp_path / "o-run" / "settings.yaml").read_text()
    assert "learning_rate: 2.0e-05" in saved and "max_steps: 4" in saved and "batch_size: 32" in saved
    ev = albert_cli("evaluate", "--model", str(tmp_path / "o"), "--data", str(dev))
    assert ev.returncode == 0 and "accuracy" in json.loads(ev.stdout)
    weights = (tmp_path / "o" / "model.safetensors").read_bytes()
    again = albert_cli("finetune", "--task", "classification", "--train", str(train), "--model", str(tiny_model),
                       "--out", str(tmp_path / "o"))
    assert again.returncode == 2 and "is not empty (README.md, config.json" in again.stderr
    assert (tmp_path / "o" / "model.safetensors").read_bytes() == weights


FIX = Path(__file__).parent / "fixtures"


def split_file(src: Path, tmp: Path, n_train: int) -> tuple[Path, Path]:
    lines = src.read_text().splitlines()
    (tmp / "train.jsonl").write_text("\n".join(lines[:n_train]) + "\n")
    (tmp / "dev.jsonl").write_text("\n".join(lines[n_train:]) + "\n")
    return tmp / "train.jsonl", tmp / "dev.jsonl"


def test_token_classification(tiny_model: Path, tmp_path: Path) -> None:
    train, dev = split_file(FIX / "wordnet_tagging.jsonl", tmp_path, 200)
    out = finetune(settings(tiny_model, train, dev, tmp_path / "tag", task="token-classification", max_steps=40,
                            learning_rate=2e-3))
    scores = json.loads((out / "dev_results.json").read_text())
    assert set(scores) == {"precision", "recall", "f1", "token_accuracy"}
    # (40 steps on WordNet's supersenses teach a tiny model little: this test is the plumbing; that tagging learns
    # is test_heads.py's, on a toy task a head that tags everything O fails)
    assert evaluate_dir(out, dev, precision="fp32") == pytest.approx(scores)
    preds = predict_dir(out, dev, precision="fp32")
    rows = [json.loads(x) for x in dev.read_text().splitlines()]
    assert [p["tokens"] for p in preds] == [r["tokens"] for r in rows]
    assert all(len(p["tags"]) == len(p["tokens"]) for p in preds)
    for p in preds:  # and the entities in `albert tag`'s shape, over the words joined by spaces
        text = " ".join(p["tokens"])
        for e in p["entities"]:
            assert set(e) == {"entity_group", "score", "word", "start", "end"}
            assert text[e["start"]:e["end"]] == e["word"] and 0 < e["score"] <= 1
        assert bool(p["entities"]) == any(t != "O" for t in p["tags"])
    import transformers
    assert transformers.AlbertForTokenClassification.from_pretrained(out).config.id2label[0] == "O"
    conll = tmp_path / "dev.conll"  # the same sentences as CoNLL columns score the same
    conll.write_text("-DOCSTART- -X- O O\n\n" + "\n\n".join(
        "\n".join(f"{w} NN O {t}" for w, t in zip(r["tokens"], r["tags"])) for r in rows) + "\n")
    assert evaluate_dir(out, conll, precision="fp32") == pytest.approx(evaluate_dir(out, dev, precision="fp32"))


def test_multiple_choice(tiny_model: Path, tmp_path: Path) -> None:
    train, dev = split_file(FIX / "wordnet_cloze.jsonl", tmp_path, 160)
    out = finetune(settings(tiny_model, train, dev, tmp_path / "mc", task="multiple-choice", max_steps=10,
                            batch_size=8))
    scores = json.loads((out / "dev_results.json").read_text())
    assert evaluate_dir(out, dev, precision="fp32") == pytest.approx(scores)  # (learning: test_heads.py)
    preds = predict_dir(out, dev, precision="fp32")
    assert len(preds) == 40 and all(len(p["scores"]) == 4 for p in preds)
    import transformers
    theirs = transformers.AlbertForMultipleChoice.from_pretrained(out).eval()
    from albert import AlbertForMultipleChoice

    ours = AlbertForMultipleChoice.from_pretrained(out)
    ids = torch.randint(5, 900, (2, 4, 12))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, theirs(ids).logits, atol=1e-5, rtol=1e-4)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"article": "a", "question": "b", "options": ["x", "y"], "label": 5}\n')
    with pytest.raises(DataError, match="bad.jsonl:1: label 5 is not an option index"):
        evaluate_dir(out, bad)


def test_qa_v1_and_v2(tiny_model: Path, tmp_path: Path) -> None:
    rows = [json.loads(x) for x in (FIX / "wordnet_qa.jsonl").read_text().splitlines()]
    train, dev = tmp_path / "train.jsonl", tmp_path / "dev.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows[:160]))
    dev.write_text("".join(json.dumps(r) + "\n" for r in rows[160:]))
    # long contexts are cut into windows: max length 64 with stride 16
    out = finetune(settings(tiny_model, train, dev, tmp_path / "qa", task="qa", max_steps=10, doc_stride=16))
    scores = json.loads((out / "dev_results.json").read_text())
    assert set(scores) >= {"exact", "f1"} and 0 <= scores["exact"] <= scores["f1"] <= 100
    preds = predict_dir(out, dev, precision="fp32")
    for p, r in zip(preds, rows[160:]):
        assert p["id"] == r["id"] and (p["answer"] == "" or p["answer"] in r["context"])  # spans of the context
    # the same questions as a SQuAD JSON file score the same
    squad = {"data": [{"paragraphs": [{"context": r["context"], "qas": [{"id": r["id"], "question": r["question"],
              "answers": [{"text": t, "answer_start": s} for t, s in zip(r["answers"]["text"],
                                                                       r["answers"]["answer_start"])]}]}]}
                      for r in rows[160:]]}
    (tmp_path / "dev.json").write_text(json.dumps(squad))
    assert evaluate_dir(out, tmp_path / "dev.json", precision="fp32") == pytest.approx(
        evaluate_dir(out, dev, precision="fp32"))
    # v2.0: a question asked of another row's context has no answer there
    v2 = [dict(r, context=rows[(i + 7) % 40 + 160]["context"], answers={"text": [], "answer_start": []})
          if i % 2 else r for i, r in enumerate(rows[160:])]
    v2 = [r for r in v2 if not r["answers"]["text"] or r["answers"]["text"][0] in r["context"]]
    (tmp_path / "v2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in v2))
    out2 = finetune(settings(tiny_model, train, tmp_path / "v2.jsonl", tmp_path / "qa2", task="qa-v2",
                             max_steps=10))
    scores2 = json.loads((out2 / "dev_results.json").read_text())
    assert {"best_exact", "best_f1", "best_exact_thresh"} <= set(scores2)
    assert scores2["best_f1"] >= scores2["f1"] - 1e-9  # the best threshold is at least as good as 0


def test_qa_answer_not_in_context_is_an_error(tiny_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "question": "q?", "context": "the cat sat",
                               "answers": {"text": ["dog"], "answer_start": [4]}}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: answer 'dog' is not in its context"):
        finetune(settings(tiny_model, bad, None, tmp_path / "o", task="qa"))
