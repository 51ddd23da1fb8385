"""Early exit over the shared layer's passes (albert.modeling.early_exit): exactness at full patience in every
precision, a
row's answer the same in a batch as alone, PABEE training through `albert finetune --early_exit true`, and the
CLI, pipeline, server and export around it. A model fine-tuned without early exit answers as before."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch

import toy_tasks as toy
from albert.errors import InputError
from albert.modeling.config import AlbertConfig
from albert.modeling.early_exit import ExitPolicy, pass_weights
from albert.modeling.heads import AlbertForMultipleChoice, AlbertForSequenceClassification
from albert.runtime.policy import prepare_for_inference, resolve_runtime
from albert.train.finetune import predict_dir
from conftest import shared_dir
from test_cli_end_to_end import cli

PASSES = 4  # albert-tiny's


def ok(run: Any, *args: str, stdin: str = "") -> list[Any]:
    """`albert ARGS` through `run` (cli: a subprocess; albert_cli: in this process), which must succeed: its JSON
    lines (evaluate's one indented object: [it])."""
    proc = run(*args, stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    if args[0] == "evaluate":
        return [json.loads(proc.stdout)]
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _batch(rows: int, length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids with every row a different length (right-padded), as the pipelines pad."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 1000, (rows, length), generator=g)
    mask = torch.ones_like(ids)
    for r in range(rows):
        mask[r, max(2, length - 3 * r):] = 0
    return ids * mask, mask


def _model(cls: type, kind: str, **overrides: Any) -> Any:
    torch.manual_seed(0)
    return cls(AlbertConfig.from_preset("albert-tiny", early_exit=kind, **overrides)).eval()


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize("kind", ["shared", "per_pass"])
def test_full_patience_equals_full_depth(kind: str, precision: str) -> None:
    """Patience of passes - 1 never stops a row early: the outputs are the full-depth model's, bit for bit, and
    every row says it ran every pass."""
    if precision == "bf16" and not resolve_runtime("cpu", "auto").precision == "bf16":
        pytest.skip("no bf16 units on this CPU (emulated bf16 is ~80x slower)")
    runtime = resolve_runtime("cpu", precision)
    ids, mask = _batch(6, 24)
    model = prepare_for_inference(_model(AlbertForSequenceClassification, kind, num_labels=3), runtime)
    with torch.inference_mode():
        full = model(input_ids=ids, attention_mask=mask).logits
        out = model(input_ids=ids, attention_mask=mask, exit_policy=ExitPolicy(patience=PASSES - 1))
    assert torch.equal(out.logits, full.float())
    assert out.exit_passes.tolist() == [PASSES] * 6
    assert full.float().isfinite().all()

    choices = prepare_for_inference(_model(AlbertForMultipleChoice, kind), runtime)
    ids3, mask3 = ids.view(2, 3, -1), mask.view(2, 3, -1)
    with torch.inference_mode():
        full = choices(input_ids=ids3, attention_mask=mask3).logits
        out = choices(input_ids=ids3, attention_mask=mask3, exit_policy=ExitPolicy(patience=PASSES - 1))
    assert torch.equal(out.logits, full.float()) and out.exit_passes.tolist() == [PASSES, PASSES]


@pytest.mark.parametrize("policy", [ExitPolicy(patience=1), ExitPolicy(threshold=1.05), ExitPolicy(1, 1.0)])
def test_a_row_answers_the_same_in_a_batch_as_alone(policy: ExitPolicy) -> None:
    """Rows leave the batch as they stop (and the batch is trimmed to its longest remaining row): each row's
    prediction and passes equal what it gets alone, unpadded."""
    model = _model(AlbertForSequenceClassification, "per_pass", num_labels=3)
    with torch.no_grad():  # a random classifier's logits are near 0: spread them, so rows stop at different passes
        for i in range(PASSES):
            model.classifier_at(i).weight.mul_(40)
    ids, mask = _batch(8, 30, seed=1)
    with torch.inference_mode():
        batched = model(input_ids=ids, attention_mask=mask, exit_policy=policy)
        for r in range(8):
            n = int(mask[r].sum())
            alone = model(input_ids=ids[r:r + 1, :n], exit_policy=policy)
            assert int(alone.exit_passes) == int(batched.exit_passes[r])
            assert int(alone.logits.argmax()) == int(batched.logits[r].argmax())
            torch.testing.assert_close(alone.logits[0], batched.logits[r], atol=1e-5, rtol=1e-5)
    assert len(set(batched.exit_passes.tolist())) > 1, "the policy should stop rows at different passes"


def _stops_by_the_rule(every: torch.Tensor, policy: ExitPolicy) -> list[int]:
    """The pass (1-based) each row stops at, by the rules' definitions applied to every pass's logits (passes × rows
    × K): the first pass whose prediction the `patience` passes before it share, or whose entropy is below the
    threshold; else the last."""
    stops = []
    for row in every.transpose(0, 1):
        predictions = row.argmax(-1).tolist()
        entropy = -(row.log_softmax(-1).exp() * row.log_softmax(-1)).sum(-1)
        stop = len(row)
        for i in range(len(row)):
            settled = policy.patience > 0 and i >= policy.patience \
                and len(set(predictions[i - policy.patience:i + 1])) == 1
            if settled or (policy.threshold > 0 and float(entropy[i]) < policy.threshold):
                stop = i + 1
                break
        stops.append(stop)
    return stops


@pytest.mark.parametrize("policy", [ExitPolicy(patience=1), ExitPolicy(patience=2), ExitPolicy(threshold=0.8)])
def test_rows_stop_where_the_rules_say(policy: ExitPolicy) -> None:
    """The loop (which runs the passes before any row can stop as one step) stops each row at the pass the rule
    names on every pass's logits, and answers with that pass's logits."""
    model = _model(AlbertForSequenceClassification, "per_pass", num_labels=3, num_hidden_layers=8)
    with torch.no_grad():
        for i in range(8):
            model.classifier_at(i).weight.mul_(40)
    ids, mask = _batch(8, 30, seed=1)
    with torch.inference_mode():
        hidden = model.albert(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        every = model._every_pass_logits(hidden).float()
        out = model(input_ids=ids, attention_mask=mask, exit_policy=policy)
    stops = _stops_by_the_rule(every, policy)
    assert out.exit_passes.tolist() == stops
    torch.testing.assert_close(out.logits, every[torch.tensor(stops) - 1, torch.arange(8)], atol=1e-4, rtol=1e-4)
    assert len(set(stops)) > 1, "the policy should stop rows at different passes"


def test_patience_rules_and_refusals() -> None:
    model = _model(AlbertForSequenceClassification, "shared", num_labels=3)
    ids, mask = _batch(4, 16)
    with torch.inference_mode():
        passes = model(input_ids=ids, attention_mask=mask, exit_policy=ExitPolicy(patience=1)).exit_passes
    assert (passes >= 2).all(), "patience p stops at pass p + 1 at the earliest"
    regression = _model(AlbertForSequenceClassification, "shared", num_labels=1, problem_type="regression")
    with pytest.raises(InputError, match="regression head"):
        regression(input_ids=ids, attention_mask=mask, exit_policy=ExitPolicy(threshold=0.5))
    with torch.inference_mode():  # patience works on a regression (values within 0.1 agree)
        assert regression(input_ids=ids, attention_mask=mask, exit_policy=ExitPolicy(patience=1)).exit_passes.numel()
    plain = _model(AlbertForSequenceClassification, None, num_labels=3)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="--early_exit true"):
        plain(input_ids=ids, attention_mask=mask, exit_policy=ExitPolicy(patience=2))
    for bad in (dict(patience=-1), dict(patience=True), dict(threshold=float("nan")), dict(threshold=-0.5)):
        with pytest.raises(InputError):
            ExitPolicy(**bad)  # type: ignore[arg-type]
    assert pass_weights(3) == [1 / 6, 2 / 6, 3 / 6]


def test_training_loss_weights_every_pass() -> None:
    """PABEE's loss: every pass's classifier gets a gradient, the last the most; the logits are the last pass's."""
    model = _model(AlbertForSequenceClassification, "per_pass", num_labels=2).train()
    ids, mask = _batch(4, 16)
    out = model(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1, 0, 1]))
    assert out.exit_logits.shape == (PASSES, 4, 2) and torch.equal(out.logits, out.exit_logits[-1])
    out.loss.backward()
    assert all(c.weight.grad is not None and c.weight.grad.abs().sum() > 0 for c in model.exit_classifiers)
    assert len(model.exit_classifiers) == PASSES - 1


@pytest.fixture(scope="session")
def exit_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny model fine-tuned with early exit on the toy classification task (as the CLI does it)."""
    def build(directory: Path) -> None:
        rows = [dict(r, label="two or more" if r["label"] >= 2 else "under two")
                for r in toy.regression(random.Random(0), 300)]
        train, dev = toy.write_split(rows, directory / "data", dev=60)
        _finetune_with_exits("classification", train, dev, tiny_model, directory / "model", 300, 2e-3)

    directory = shared_dir(tmp_path_factory, "early-exit", build)
    return directory / "model", directory / "data" / "dev.jsonl"


def _finetune_with_exits(task: str, train: Path, dev: Path, model: Path, out: Path, steps: int, lr: float) -> Path:
    """`albert finetune --early_exit true` as a user runs it, on the tiny model (fp32, one thread)."""
    proc = cli("finetune", "--task", task, "--train", str(train), "--dev", str(dev), "--model", str(model), "--out",
               str(out), "--early_exit", "true", "--max_seq_length", "64", "--max_steps", str(steps), "--batch_size",
               "16", "--learning_rate", str(lr), "--precision", "fp32", "--progress", "false", "--num_threads", "1")
    assert proc.returncode == 0, proc.stderr
    return out


def test_finetuned_early_exit_through_the_cli(exit_model: tuple[Path, Path], tiny_model: Path,
                                              albert_cli: Any) -> None:
    """evaluate, predict and classify with --patience / --exit-threshold stop rows where the library does (some
    before the last pass, so a flag that was ignored would show), and say the passes."""
    from albert.inference.pipelines import pipeline

    model, dev = exit_model
    assert json.loads((model / "config.json").read_text())["early_exit"] == "shared"
    [full] = ok(cli, "evaluate", "--model", str(model), "--data", str(dev), "--precision", "fp32")
    assert full["accuracy"] >= 0.75 and "mean_passes" not in full
    [early] = ok(albert_cli, "evaluate", "--model", str(model), "--data", str(dev), "--precision", "fp32",
                 "--patience", "1")
    assert 2 <= early["mean_passes"] < PASSES and early["accuracy"] >= 0.7, early
    predicted = ok(cli, "predict", "--model", str(model), "--data", str(dev), "--precision", "fp32", "--patience",
                   "1")
    want = predict_dir(model, dev, precision="fp32", exit_policy=ExitPolicy(patience=1))
    assert [r["passes"] for r in predicted] == [r["passes"] for r in want] and len(predicted) == 60
    assert sum(r["passes"] for r in predicted) / 60 == pytest.approx(early["mean_passes"])
    assert min(r["passes"] for r in predicted) == 2 and max(r["passes"] for r in predicted) <= PASSES
    texts = [json.loads(line)["text"] for line in dev.read_text().splitlines()[:5]]
    pipe = pipeline("text-classification", model=str(model), precision="fp32")
    for flags, kwargs in ((["--patience", "1", "--exit-threshold", "0.3"], {"patience": 1, "exit_threshold": 0.3}),
                          (["--exit-threshold", "10"], {"exit_threshold": 10.0})):  # (10 nats: every row at pass 1)
        answers = albert_cli("classify", *texts, "--model", str(model), "--precision", "fp32", *flags)
        assert answers.returncode == 0, answers.stderr
        got = [json.loads(line) for line in answers.stdout.splitlines()]
        expected = pipe(texts, **kwargs)
        assert [(a["label"], a["passes"]) for a in got] == [(a["label"], a["passes"]) for a in expected]
    assert [a["passes"] for a in got] == [1] * 5
    plain = ok(cli, "classify", *texts, "--model", str(model))
    assert len(plain) == 5 and all("passes" not in a for a in plain)
    for bad in (["--patience", "-1"], ["--exit-threshold", "nan"]):
        proc = albert_cli("classify", "x", "--model", str(model), *bad)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    refused = albert_cli("export", "onnx", "--model", str(model), "--out", str(model.parent / "m.onnx"))
    assert refused.returncode == 2 and "--full-depth" in refused.stderr


def test_export_full_depth_gives_the_full_depth_classifier(exit_model: tuple[Path, Path], tmp_path: Path,
                                                           albert_cli: Any) -> None:
    """`albert export onnx --full-depth` of an early-exit model: ONNX Runtime's probabilities are the pipeline's
    without patience (every pass), within 1e-4."""
    import numpy as np
    import onnxruntime

    from albert.inference.pipelines import pipeline
    from albert.tokenization.tokenizer import AlbertTokenizer

    model, dev = exit_model
    path = tmp_path / "full.onnx"
    done = albert_cli("export", "onnx", "--model", str(model), "--out", str(path), "--full-depth")
    assert done.returncode == 0, done.stderr
    texts = [json.loads(line)["text"] for line in dev.read_text().splitlines()[:8]]
    batch = AlbertTokenizer.from_pretrained(model)(texts, padding=True, return_tensors="np")
    logits = onnxruntime.InferenceSession(str(path)).run(None, {k: batch[k].astype(np.int64) for k in (
        "input_ids", "attention_mask", "token_type_ids")})[0]
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    labels = json.loads((model / "config.json").read_text())["id2label"]
    want = pipeline("text-classification", model=str(model), precision="fp32")(texts, top_k=None)
    for row, ranked in zip(probs, want):
        assert all(abs(row[int(i)] - next(r["score"] for r in ranked if r["label"] == name)) < 1e-4
                   for i, name in labels.items())


def test_a_model_without_early_exit_refuses_patience(toy_models: dict[str, tuple[Path, Path]], albert_cli: Any
                                                     ) -> None:
    model, dev = toy_models["classification"]
    proc = albert_cli("evaluate", "--model", str(model), "--data", str(dev), "--patience", "2")
    assert proc.returncode == 2 and "--early_exit true" in proc.stderr
    qa, qa_dev = toy_models["qa"]
    proc = albert_cli("evaluate", "--model", str(qa), "--data", str(qa_dev), "--patience", "2")
    assert proc.returncode == 2 and "classify a whole input" in proc.stderr


def test_compiled_int8_exits_as_eager(exit_model: tuple[Path, Path]) -> None:
    """--compile compiles one pass of the shared layer for early exit's loop: the same passes and predictions."""
    from albert.inference.pipelines import pipeline

    model, dev = exit_model
    texts = [json.loads(line)["text"] for line in dev.read_text().splitlines()[:24]]
    eager = pipeline("text-classification", model=str(model), precision="int8")(texts, patience=1)
    compiled = pipeline("text-classification", model=str(model), precision="int8", compile=True)(texts, patience=1)
    assert [a["passes"] for a in compiled] == [a["passes"] for a in eager]
    assert [a["label"] for a in compiled] == [a["label"] for a in eager]


def test_the_server_takes_patience_and_counts_passes(exit_model: tuple[Path, Path]) -> None:
    from albert.inference.pipelines import pipeline
    from albert.serving.launch import ServeSettings, build_app, running
    from test_server import post, request

    model, _ = exit_model
    pipe = pipeline("text-classification", model=str(model), precision="fp32")
    app, batcher = build_app(pipe, "text-classification", ServeSettings())
    texts = ["one two 33 and 44", "no numbers here at all"]
    try:
        with running(app) as url:
            status, answer = post(url + "/classify", {"inputs": texts, "parameters": {"exit_threshold": 10.0}})
            assert status == 200 and [a["passes"] for a in answer] == [1, 1], answer  # (10 nats: at pass 1)
            status, answer = post(url + "/classify", {"inputs": texts, "parameters": {"patience": 1}})
            want = pipe(texts, patience=1)
            assert status == 200 and [(a["label"], a["passes"]) for a in answer] == [
                (a["label"], a["passes"]) for a in want], answer
            status, bad = post(url + "/classify", {"inputs": "x", "parameters": {"patience": 1.5}})
            assert status == 400 and "patience" in bad["error"]
            metrics = request(url + "/metrics")[1]
            assert "albert_exit_passes_count 4.0" in str(metrics)  # (both requests' inputs)
    finally:
        batcher.close()


def test_transformers_loads_an_early_exit_model_at_full_depth(tmp_path: Path) -> None:
    """An early-exit directory is an ordinary ALBERT classifier to transformers: its last classifier is `classifier`,
    so transformers' outputs are ours at full depth (the per-pass classifiers are extra weights it ignores)."""
    import transformers
    ours = _model(AlbertForSequenceClassification, "per_pass", num_labels=3)
    ours.save_pretrained(tmp_path)
    theirs = transformers.AlbertForSequenceClassification.from_pretrained(str(tmp_path)).eval()
    ids, mask = _batch(3, 12)
    with torch.inference_mode():
        torch.testing.assert_close(theirs(input_ids=ids, attention_mask=mask).logits,
                                   ours(input_ids=ids, attention_mask=mask).logits, atol=1e-5, rtol=1e-4)


# ----- sentence order: pairs cut from documents, fine-tuned from the SOP head, answered by `sentence-order` -----
FIXTURE_TEXT = Path(__file__).parent / "fixtures" / "public_domain.txt"


@pytest.fixture(scope="session")
def order_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny model fine-tuned for sentence order with early exit (as the CLI does it), on pairs cut from the
    fixture text's documents: the first 120 documents train, the rest are dev."""
    def build(directory: Path) -> None:
        directory.mkdir(parents=True)
        documents = FIXTURE_TEXT.read_text(encoding="utf-8").split("\n\n")
        train, dev = directory / "train.txt", directory / "dev.txt"
        train.write_text("\n\n".join(documents[:120]), encoding="utf-8")
        dev.write_text("\n\n".join(documents[120:]), encoding="utf-8")
        _finetune_with_exits("sentence-order", train, dev, tiny_model, directory / "model", 40, 1e-3)

    directory = shared_dir(tmp_path_factory, "sentence-order", build)
    return directory / "model", directory / "dev.txt"


def test_sentence_order_pairs_are_sop_s_and_the_same_each_read(tiny_model: Path, tmp_path: Path) -> None:
    """A text file's documents become pairs of consecutive segments, in order or swapped, the same on every read
    (fine-tuning, evaluate and predict see the same dev pairs); every pair fits the length with its special tokens."""
    from albert.tokenization.tokenizer import AlbertTokenizer
    from albert.train.finetune import TaskSpec, read_task_rows

    tokenizer = AlbertTokenizer.from_pretrained(tiny_model)
    spec = TaskSpec("sentence-order", 64)
    first, spec_read = read_task_rows(spec, FIXTURE_TEXT, ["in_order", "swapped"], tokenizer)
    again, _ = read_task_rows(spec, FIXTURE_TEXT, ["in_order", "swapped"], tokenizer)
    assert [(e.text, e.pair, e.label) for e in first] == [(e.text, e.pair, e.label) for e in again]
    assert spec_read.fields == ["first", "second"] and len(first) > 200
    share = sum(e.label for e in first) / len(first)
    assert 0.35 < share < 0.65, "about half the pairs are swapped"
    assert all(e.text.strip() and e.pair for e in first)
    lengths = [len(tokenizer(e.text, e.pair)["input_ids"]) for e in first]
    assert max(lengths) <= 64 + 2, "segments are cut to the length (a decoded piece may re-encode as two)"
    empty = tmp_path / "empty.txt"
    empty.write_text("a\n\n\nb\n", encoding="utf-8")
    proc = cli("finetune", "--task", "sentence-order", "--train", str(empty), "--model", str(tiny_model), "--out",
               str(tmp_path / "m"))
    assert proc.returncode == 2 and "no pairs" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_sentence_order_starts_from_the_sop_head(tiny_model: Path) -> None:
    """Fine-tuning for sentence order starts each pass's classifier as pretraining's SOP head: before a step, the
    classifier's answers are the pretrained model's sentence-order answers, exactly."""
    from albert.modeling.heads import AlbertForPreTraining
    from albert.train.finetune import sop_head_weight

    pretrained = AlbertForPreTraining.from_pretrained(tiny_model).eval()
    ids, mask = _batch(4, 20)
    for kind in ("shared", "per_pass"):
        start = AlbertForSequenceClassification.from_pretrained(tiny_model, num_labels=2, early_exit=kind,
                                                                fill_missing=sop_head_weight).eval()
        assert start.loading_info["missing_keys"] == []
        with torch.inference_mode():
            sop = pretrained(input_ids=ids, attention_mask=mask).sop_logits
            every = start._every_pass_logits(start.albert(input_ids=ids, attention_mask=mask,
                                                          output_hidden_states=True).hidden_states)
            assert torch.equal(start(input_ids=ids, attention_mask=mask).logits, sop)
        assert torch.equal(every[-1], sop) and every.shape[0] == PASSES


def test_sentence_order_exits_early_through_the_cli(order_model: tuple[Path, Path], tiny_model: Path,
                                                    toy_models: dict[str, tuple[Path, Path]],
                                                    albert_cli: Any) -> None:
    from albert.serving.launch import task_for

    model, dev = order_model
    config = json.loads((model / "config.json").read_text())
    assert config["albert_task"]["task"] == "sentence-order" and config["early_exit"] == "shared"
    assert config["id2label"] == {"0": "in_order", "1": "swapped"}
    assert task_for(str(model)) == "sentence-order", "--task auto serves it as sentence order, not classify"
    [full] = ok(albert_cli, "evaluate", "--model", str(model), "--data", str(dev), "--precision", "fp32")
    [early] = ok(albert_cli, "evaluate", "--model", str(model), "--data", str(dev), "--precision", "fp32",
                 "--exit-threshold", "10")
    assert "accuracy" in full and "mean_passes" not in full and early["mean_passes"] == 1  # (10 nats: at pass 1)
    predicted = ok(albert_cli, "predict", "--model", str(model), "--data", str(dev), "--precision", "fp32")
    pairs = [{"first": "The ship left the harbour at dawn.", "second": "By noon it was far out at sea."},
             {"first": "By noon it was far out at sea.", "second": "The ship left the harbour at dawn."}]
    stdin = "".join(json.dumps(p) + "\n" for p in pairs)
    plain = ok(cli, "sentence-order", "--model", str(model), "--precision", "fp32", stdin=stdin)
    assert len(predicted) > 20 and all(p["label"] in ("in_order", "swapped") for p in predicted + plain)
    assert all("passes" not in a for a in plain)
    patient = [json.loads(x) for x in albert_cli("sentence-order", "--model", str(model), "--precision", "fp32",
                                                 "--patience", str(PASSES - 1), stdin=stdin).stdout.splitlines()]
    assert [a["passes"] for a in patient] == [PASSES, PASSES], "full patience runs every pass"
    assert [(a["label"], round(a["score"], 5)) for a in patient] == [(a["label"], round(a["score"], 5))
                                                                      for a in plain]
    quick = albert_cli("sentence-order", "--first", "a b c", "--second", "d e f", "--model", str(model),
                       "--precision", "fp32", "--patience", "1", "--exit-threshold", "10")
    assert quick.returncode == 0 and json.loads(quick.stdout)["passes"] == 1, quick.stderr
    # pretraining's SOP head has no classifier per pass; a classifier of other labels is not a sentence-order model
    for other, message in ((tiny_model, "--early_exit true"), (toy_models["classification"][0], "sentence-order")):
        proc = albert_cli("sentence-order", "--first", "a", "--second", "b", "--model", str(other), "--patience",
                          "1")
        assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_the_server_answers_sentence_order_with_passes(order_model: tuple[Path, Path]) -> None:
    from albert.inference.pipelines import pipeline
    from albert.serving.launch import ServeSettings, build_app, running
    from test_server import post

    model, _ = order_model
    app, batcher = build_app(pipeline("sentence-order", model=str(model), precision="fp32"), "sentence-order",
                             ServeSettings())
    try:
        with running(app) as url:
            status, answer = post(url + "/sentence-order", {"inputs": [{"first": "It rained.", "second": "We stayed "
                                                                        "in."}], "parameters": {"exit_threshold": 10}})
            assert status == 200 and answer[0]["label"] in ("in_order", "swapped") and answer[0]["passes"] == 1, \
                answer
    finally:
        batcher.close()


@pytest.mark.parametrize("task", ["regression", "multiple-choice"])
def test_regression_and_multiple_choice_exit_early_through_the_cli(task: str, tiny_model: Path, tmp_path: Path,
                                                                    albert_cli: Any) -> None:
    """`--early_exit true` trains the other two kinds that answer a whole input; evaluate, predict and (multiple
    choice) `choose` stop early with patience and say the passes; a regression refuses an entropy threshold."""
    rows = (toy.regression if task == "regression" else toy.multiple_choice)(random.Random(0), 120)
    train, dev = toy.write_split(rows, tmp_path / "data", dev=30)
    model = _finetune_with_exits(task, train, dev, tiny_model, tmp_path / "model", 20, 1e-3)
    patience = PASSES - 2  # (a regression's passes agree within 0.1 soon after 20 steps; a row may stop at pass 3)
    flags = ("--model", str(model), "--data", str(dev), "--precision", "fp32", "--patience", str(patience))
    [scores] = ok(albert_cli, "evaluate", *flags)
    predicted = ok(albert_cli, "predict", *flags)
    want = predict_dir(model, dev, precision="fp32", exit_policy=ExitPolicy(patience=patience))
    assert [p["passes"] for p in predicted] == [p["passes"] for p in want] and len(predicted) == 30
    assert scores["mean_passes"] == pytest.approx(sum(p["passes"] for p in want) / 30)
    if task == "multiple-choice":
        question = {k: rows[0][k] for k in ("question", "options", "article") if k in rows[0]}
        [answer] = ok(cli, "choose", "--model", str(model), "--precision", "fp32", "--exit-threshold", "10",
                      stdin=json.dumps(question))
        assert 0 <= answer["label"] < len(question["options"]) and answer["passes"] == 1  # (10 nats: at pass 1)
    else:
        assert min(p["passes"] for p in predicted) < PASSES, "no row stopped early: --patience was not used"
        proc = albert_cli("evaluate", "--model", str(model), "--data", str(dev), "--exit-threshold", "0.5")
        assert proc.returncode == 2 and "regression" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
