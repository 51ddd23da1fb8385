"""Every head: each fine-tuning kind learns its toy task well above chance (tests/toy_tasks.py), and every
`AlbertFor*` head runs in every precision — fp32, bf16, int8, and under --compile — through its pipeline and
through `evaluate`, within stated tolerances of fp32."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch._dynamo.utils import counters

import albert
from albert.modeling.backbone import HEAD_NAMES
from albert.train.finetune import evaluate_dir

# kind → (the metric that shows learning, the least it must reach, what a head that learned nothing scores)
LEARNED = {
    "classification": ("accuracy", 0.75, "0.5: the majority label"),
    "regression": ("pearson", 0.8, "0: a constant"),
    "multi-label": ("exact_match", 0.7, "~0.5: the best constant set of labels"),
    "token-classification": ("f1", 0.6, "0: every word O"),
    "multiple-choice": ("accuracy", 0.8, "0.25"),
    "qa": ("exact", 40.0, "~0: one span among ~30 words"),
    "qa-v2": ("exact", 60.0, "~30: always 'no answer'"),
}
# SQuAD 2.0's two halves, each of which a head that learned only one of them fails: (metric, least)
LEARNED_V2 = [("HasAns_exact", 60.0), ("NoAns_exact", 60.0)]  # (never "no answer": NoAns 0; always: HasAns 0)


@pytest.mark.parametrize("kind", list(LEARNED))
def test_each_kind_learns_its_toy_task_well_above_chance(toy_models: dict[str, tuple[Path, Path]], kind: str
                                                         ) -> None:
    metric, least, _chance = LEARNED[kind]
    out, _dev = toy_models[kind]
    scores = json.loads((out / "dev_results.json").read_text())
    assert scores[metric] >= least, scores
    if kind == "regression":  # and not a near-constant that happens to correlate: the labels' variance is 1.25
        assert scores["mse"] <= 0.5, scores
    if kind == "qa-v2":  # the spans and the answerability head each learned their half
        assert all(scores[name] >= least for name, least in LEARNED_V2), scores


def test_every_head_class_names_its_modules_in_one_place() -> None:
    config = albert.AlbertConfig.from_preset("albert-tiny")
    classes = [getattr(albert, n) for n in dir(albert) if n.startswith("AlbertFor")]
    assert len(classes) >= 7
    for cls in classes:
        model = cls(config)
        names = {name for name, _ in model.named_children()}
        assert names - {"albert"} <= HEAD_NAMES, (cls.__name__, names)
        assert model.head_modules(), cls.__name__  # every head has a module the runtime keeps in fp32


# (precision, compile): the CPU's precisions, and --compile on the fastest one and on bf16 ("auto" on CPUs with
# bf16 units). The fine-tuned heads compile in int8 only (each compilation takes 10-20 s here); bf16 under --compile
# runs the pretraining heads and the answerability head, whose fp32 layers once met bf16 activations.
# Compiled, they run under -m slow: the default run compiles the masked-LM head (test_server's compiled server, fp32),
# a sequence head in int8 (below) and the answerability head in bf16, through the same compile wrapper.
RUNS = [("bf16", False), ("int8", False), pytest.param("int8", True, marks=pytest.mark.slow),
        pytest.param("bf16", True, marks=pytest.mark.slow)]
# compiled, the default suite runs a sequence head and a span head (each compilation takes 10-20 s of a 2-core CI
# machine); `-m slow` compiles every head (the answerability head's compiled run is its own test below)
COMPILED_BY_DEFAULT = ("classification", "qa")
FINE_TUNED_RUNS = [("bf16", False, None), ("int8", False, None), ("int8", True, COMPILED_BY_DEFAULT),
                   pytest.param("int8", True, None, marks=pytest.mark.slow)]

# the largest difference from fp32 allowed: in a score or probability (0-1), and in a metric on the 0-100 scale
SCORE_TOLERANCE = {"bf16": 0.05, "int8": 0.05}
METRIC_TOLERANCE_100 = 10.0


def _pipeline_inputs(kind: str, dev: Path) -> tuple[str, Any, dict[str, Any]]:
    rows = [json.loads(x) for x in dev.read_text().splitlines()][:12]
    if kind in ("classification", "regression", "multi-label"):
        return "text-classification", [r["text"] for r in rows], {}
    if kind == "token-classification":
        return "token-classification", [" ".join(r["tokens"]) for r in rows], {}
    if kind == "multiple-choice":
        return "multiple-choice", [{k: r[k] for k in ("article", "question", "options")} for r in rows], {}
    return "question-answering", [{"question": r["question"], "context": r["context"]} for r in rows], {}


# a QA span scored below this by fp32 is not an answer anyone takes (the model put its mass elsewhere, on "no
# answer"): which of such spans comes first is a tie among near-zeros, decided by rounding
NEGLIGIBLE_SPAN = 1e-3


def _close(a: Any, b: Any, tolerance: float) -> bool:
    """Equal structures; numbers within `tolerance` (relative past 1: a logit of -20 is not a probability), strings
    and integers equal; a QA answer whose fp32 span is negligible is compared by its no-answer score alone."""
    if isinstance(a, dict):
        if "no_answer_score" in b and b.get("score", 1.0) < NEGLIGIBLE_SPAN:
            return _close(a["no_answer_score"], b["no_answer_score"], tolerance)
        return a.keys() == b.keys() and all(_close(a[k], b[k], tolerance) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y, tolerance) for x, y in zip(a, b))
    if isinstance(a, float):
        return abs(a - b) <= tolerance * max(1.0, abs(b))
    return a == b


def _agreement(got: list[Any], want: list[Any], tolerance: float) -> float:
    return sum(_close(g, w, tolerance) for g, w in zip(got, want, strict=True)) / len(want)


@functools.cache
def _fp32_scores(out: Path, dev: Path) -> dict[str, float]:
    """A fine-tuned toy model's fp32 metrics, the reference of every precision (computed once per worker)."""
    return evaluate_dir(out, dev, device="cpu", precision="fp32")


@functools.cache
def _fp32_outputs(out: Path, dev: Path, kind: str) -> Any:
    task, inputs, kwargs = _pipeline_inputs(kind, dev)
    return albert.pipeline(task, model=out, device="cpu", precision="fp32")(inputs, **kwargs)


@pytest.mark.parametrize("precision,compile,kinds", FINE_TUNED_RUNS,
                         ids=["bf16", "int8", "int8-compile", "int8-compile-every-head"])
def test_fine_tuned_heads_in_every_precision(toy_models: dict[str, tuple[Path, Path]], precision: str,
                                             compile: bool, kinds: tuple[str, ...] | None, albert_cli: Any) -> None:
    """Each fine-tuned head (sequence classification and regression, tagging, multiple choice, QA spans, QA with
    the answerability head): `evaluate`'s metrics and the pipeline's outputs against fp32's (compiled: the pipeline's;
    a classifier's through `albert classify --compile`). Outputs agree when every label, span and index is equal and
    every score within SCORE_TOLERANCE; at least 90% of the inputs must."""
    tolerance = SCORE_TOLERANCE[precision]
    for kind, (out, dev) in toy_models.items():
        if compile and (kind == "regression" or (kinds is not None and kind not in kinds)):
            continue  # (regression: the same head class as classification's, compiled there)
        if not compile:  # compiled, every head runs through its pipeline below (evaluate loads it the same way)
            want = _fp32_scores(out, dev)
            got = evaluate_dir(out, dev, device="cpu", precision=precision, compile=compile)
            assert got.keys() == want.keys()
            for name, value in want.items():
                if name.startswith(("HasAns_", "NoAns_")):
                    continue  # (exact and f1 are their sum; on 15 unanswerable rows one flip is 7 points)
                scale = 100.0 if name.endswith(("exact", "f1")) else 1.0
                limit = METRIC_TOLERANCE_100 if scale == 100 else (0.1 if "thresh" in name or name == "mse" else 0.05)
                assert abs(got[name] - value) <= limit * max(1.0, abs(value) if name == "mse" else 1.0), \
                    (kind, precision, compile, name, got[name], value)
        task, inputs, kwargs = _pipeline_inputs(kind, dev)
        reference = _fp32_outputs(out, dev, kind)
        if compile and kind == "classification":  # through the CLI's --compile (`albert classify`)
            graphs = counters["stats"]["unique_graphs"]
            done = albert_cli("classify", *inputs, "--model", str(out), "--precision", precision, "--compile")
            assert done.returncode == 0 and counters["stats"]["unique_graphs"] > graphs, done.stderr
            outputs = [json.loads(line) for line in done.stdout.splitlines()]
        else:
            outputs = albert.pipeline(task, model=out, device="cpu", precision=precision, compile=compile)(
                inputs, **kwargs)
        assert _agreement(outputs, reference, tolerance) >= 0.9, (kind, precision, compile, outputs, reference)


@pytest.mark.parametrize("precision,compile", RUNS, ids=["bf16", "int8", "int8-compile", "bf16-compile"])
def test_pretraining_heads_in_every_precision(tiny_model: Path, precision: str, compile: bool) -> None:
    """The masked-LM head (fill-mask) and the sentence-order head (AlbertForPreTraining's) against fp32."""
    text = (Path(__file__).parent / "fixtures" / "public_domain.txt").read_text(encoding="utf-8").splitlines()
    lines = [line for line in text if len(line.split()) > 12][:12]
    masked = [" ".join(w if i != 5 else "[MASK]" for i, w in enumerate(line.split()[:16])) for line in lines]
    pairs = [{"first": a, "second": b} for a, b in zip(lines[::2], lines[1::2])]
    for task, inputs in (("fill-mask", masked), ("sentence-order", pairs)):
        reference = albert.pipeline(task, model=tiny_model, device="cpu", precision="fp32")(inputs)
        outputs = albert.pipeline(task, model=tiny_model, device="cpu", precision=precision, compile=compile)(inputs)
        if task == "fill-mask":  # the top answer, and its score
            reference, outputs = [r[0] for r in reference], [o[0] for o in outputs]
        assert _agreement(outputs, reference, SCORE_TOLERANCE[precision]) >= 0.9, (task, outputs, reference)


def test_the_answerability_head_in_bf16_eager_and_compiled(toy_models: dict[str, tuple[Path, Path]]) -> None:
    """The head that once ran its fp32 layers on bf16 activations (a dtype error): its logits in bf16 match fp32's,
    and the compiled bf16 pipeline answers as the fp32 one."""
    from albert.runtime.policy import Runtime, prepare_for_inference

    out, dev = toy_models["qa-v2"]
    tok = albert.AlbertTokenizer.from_pretrained(out)
    batch = tok(["Which number is in the text?"], ["the whale swam 42 miles"], return_tensors="pt")
    fp32 = albert.AlbertForQuestionAnsweringWithAnswerability.from_pretrained(out).eval()
    bf16 = prepare_for_inference(albert.AlbertForQuestionAnsweringWithAnswerability.from_pretrained(out),
                                 Runtime(torch.device("cpu"), "bf16"))
    with torch.no_grad():
        want, got = fp32(**batch), bf16(**batch)
    assert got.cls_logits.dtype == torch.float32
    torch.testing.assert_close(got.cls_logits, want.cls_logits, atol=0.1, rtol=0.05)
    assert torch.equal(got.start_top_index[:, 0], want.start_top_index[:, 0])
    task, inputs, _ = _pipeline_inputs("qa-v2", dev)
    reference = albert.pipeline(task, model=out, device="cpu", precision="fp32")(inputs)
    compiled = albert.pipeline(task, model=out, device="cpu", precision="bf16", compile=True)(inputs)
    assert _agreement(compiled, reference, SCORE_TOLERANCE["bf16"]) >= 0.9, (compiled, reference)
