"""Subcommands beyond the core: fine-tuning, evaluation and prediction."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any


def _finetune(a: argparse.Namespace, extra: list[str]) -> None:
    from albert.tasks.finetune import FinetuneSettings, apply_recipe, finetune
    from albert.train.settings import build_settings, load_settings, parse_overrides

    values = {"task": a.task, "train": a.train, "dev": a.dev or "", "model": a.model, "out": a.out}
    if a.recipe:
        values["recipe"] = a.recipe
    values.update(parse_overrides(extra))
    if a.config:
        base = load_settings(FinetuneSettings, a.config, {"train": a.train, "out": a.out})
        import dataclasses

        values = {**dataclasses.asdict(base), **{k: v for k, v in values.items() if v}}
    settings = build_settings(FinetuneSettings, apply_recipe(values))
    out = finetune(settings, resume=a.resume)
    print(f"fine-tuned model: {out}")


def _evaluate(a: argparse.Namespace) -> None:
    from albert.tasks.finetune import evaluate_dir

    print(json.dumps(evaluate_dir(a.model, a.data, a.device, a.precision), indent=2))


def _predict(a: argparse.Namespace) -> None:
    from albert.tasks.finetune import predict_dir

    for row in predict_dir(a.model, a.data, a.device, a.precision):
        print(json.dumps(row, ensure_ascii=False))


CHUNK = 256  # inputs per pipeline call; a progress bar appears past one chunk


def require_inputs(items: list[Any]) -> None:
    if not items:
        from albert.data.reader import DataError

        raise DataError("no input: pass text arguments, --file FILE.jsonl, or lines on stdin")


def stream(pipe: Callable[..., list[Any]], items: list[Any], **kwargs: Any) -> Iterator[Any]:
    """The pipeline's results over `items`, CHUNK at a time, with a progress bar (stderr) past one chunk."""
    if len(items) <= CHUNK:  # no bar, and no tqdm import (30 ms of fill-mask's start-up)
        yield from pipe(items, **kwargs)
        return
    from tqdm import tqdm

    with tqdm(total=len(items), unit=" inputs", file=sys.stderr) as bar:
        for i in range(0, len(items), CHUNK):
            yield from pipe(items[i:i + CHUNK], **kwargs)
            bar.update(min(CHUNK, len(items) - i))


def _run_pipeline(task: str, a: argparse.Namespace, items: list[Any], **kwargs: Any) -> None:
    from albert.inference.pipelines import pipeline

    require_inputs(items)
    pipe = pipeline(task, model=a.model, device=a.device, precision=a.precision, compile=a.compile)
    for result in stream(pipe, items, **kwargs):
        print(json.dumps(result, ensure_ascii=False))


def task_inputs(task: str, a: argparse.Namespace, stdin_json: bool = False) -> list[Any]:
    """The command's inputs (arguments, --file or stdin), each checked and shaped for the task's pipeline."""
    from albert.cli import read_inputs
    from albert.inference.inputs import task_input

    return [task_input(task, x, n) for n, x in enumerate(read_inputs(getattr(a, "text", None), a.file, stdin_json), 1)]


def _embed(a: argparse.Namespace) -> None:
    _run_pipeline("feature-extraction", a, task_inputs("feature-extraction", a), pooling=a.pooling,
                  normalize=a.normalize)


def _classify(a: argparse.Namespace) -> None:
    items = task_inputs("text-classification", a)
    if a.pair is not None:
        items = [x | {"text_pair": a.pair} for x in items]
    _run_pipeline("text-classification", a, items, top_k=a.top_k)


def _tag(a: argparse.Namespace) -> None:
    _run_pipeline("token-classification", a, task_inputs("token-classification", a),
                  aggregation_strategy=a.aggregation)


def _answer(a: argparse.Namespace) -> None:
    if a.question is not None:
        if a.context is None:
            from albert.data.reader import DataError

            raise DataError("--question needs --context")
        items = [{"question": a.question, "context": a.context}]
    else:
        items = task_inputs("question-answering", a, stdin_json=True)
    _run_pipeline("question-answering", a, items, doc_stride=a.doc_stride, max_answer_length=a.max_answer_length,
                  handle_impossible_answer=a.allow_no_answer)


def _choose(a: argparse.Namespace) -> None:
    from albert.inference.inputs import task_input

    if a.question is not None:
        items = [task_input("multiple-choice", {"article": a.article or "", "question": a.question,
                                                "options": a.options or []}, 1)]
    else:
        items = task_inputs("multiple-choice", a, stdin_json=True)
    _run_pipeline("multiple-choice", a, items)


def _serve(a: argparse.Namespace) -> None:
    from albert.inference.pipelines import pipeline
    from albert.inference.server import check_settings, serve, task_for

    task = task_for(a.model) if a.task == "auto" else a.task
    check_settings(task, a.port, a.max_batch)
    pipe = pipeline(task, model=a.model, device=a.device, precision=a.precision, compile=a.compile)
    info = {"model": str(a.model), "device": str(pipe.device), "precision": a.precision,
            "dtype": str(pipe.dtype).removeprefix("torch.")}
    serve(pipe, task, a.host, a.port, a.max_batch, info)


def _export_onnx(a: argparse.Namespace) -> None:
    from albert.checkpoint import SAFE_WEIGHTS_NAME, resolve_model_dir
    from albert.export import ExportError, export_onnx, load_for_export

    weights = resolve_model_dir(a.model) / SAFE_WEIGHTS_NAME if a.share_weights else None
    if weights is not None and not weights.is_file():
        raise ExportError(f"--share-weights needs {weights}")
    info = export_onnx(load_for_export(a.model, a.architecture), a.out, opset=a.opset, quantize=a.quantize,
                       share_weights=weights)
    print(f"wrote {info['path']} ({info['bytes'] / 1e6:.1f} MB; outputs {', '.join(info['outputs'])})")


def _convert(a: argparse.Namespace) -> None:
    from albert.tf_import import convert_tf_checkpoint

    info = convert_tf_checkpoint(a.from_tf, a.config, a.out)
    print(f"wrote {a.out} (skipped {len(info['skipped'])} optimizer/step entries; "
          f"unknown: {', '.join(info['unknown']) or 'none'}; newly initialised: "
          f"{', '.join(info['initialised']) or 'none'})")


def add_commands(sub: Any, add_runtime_args: Callable[[argparse.ArgumentParser], None]) -> None:
    def inference(name: str, help_: str, func: Callable[..., None], texts: bool = True) -> argparse.ArgumentParser:
        t = sub.add_parser(name, help=help_)
        if texts:
            t.add_argument("text", nargs="*", help="texts (else --file, else stdin lines)")
        t.add_argument("--file", default=None,
                       help="JSONL input" + ("" if texts else " (else JSON objects, one per line, on stdin)"))
        t.add_argument("--model", default="albert-small-en")
        add_runtime_args(t)
        t.set_defaults(func=func)
        return t

    t = inference("embed", "sentence vectors, one JSON list per input", _embed)
    t.add_argument("--pooling", choices=["cls", "mean"], default="cls")
    t.add_argument("--normalize", action="store_true")
    t = inference("classify", "labels of texts (a fine-tuned classifier)", _classify)
    t.add_argument("--pair", default=None, help="second text for every input")
    t.add_argument("--top-k", type=int, default=1)
    t = inference("tag", "entities in texts (a fine-tuned token classifier)", _tag)
    t.add_argument("--aggregation", choices=["simple", "none"], default="simple")
    t = inference("answer", "extractive answers (a fine-tuned QA model)", _answer, texts=False)
    t.add_argument("--question", default=None)
    t.add_argument("--context", default=None)
    t.add_argument("--doc-stride", type=int, default=128)
    t.add_argument("--max-answer-length", type=int, default=30)
    t.add_argument("--allow-no-answer", action="store_true",
                   help="answer \"\" where the model prefers no answer (SQuAD 2.0 models)")
    from albert.inference.inputs import PARAMETERS

    t = sub.add_parser("serve", help="answer HTTP requests (JSON) with a pipeline; concurrent requests batched")
    t.add_argument("--task", default="auto", choices=["auto", *PARAMETERS],
                   help="the pipeline (auto: the one the model directory was fine-tuned for; fill-mask for a "
                        "pretrained model); its endpoint is POST /fill-mask, /embed, /classify, /tag, /answer, "
                        "/choose or /sentence-order")
    t.add_argument("--model", default="albert-small-en")
    t.add_argument("--host", default="127.0.0.1",
                   help="0.0.0.0 to accept connections from other machines (no authentication: keep it behind a "
                        "proxy that has some)")
    t.add_argument("--port", type=int, default=8000, help="0: any free port (printed)")
    t.add_argument("--max-batch", type=int, default=64, help="inputs run together at most")
    add_runtime_args(t)
    t.set_defaults(func=_serve)
    ex = sub.add_parser("export", help="export a model").add_subparsers(dest="export_format", required=True)
    t = ex.add_parser("onnx", help="ONNX with dynamic batch/sequence axes, the shared layer stored once")
    t.add_argument("--model", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--architecture", default=None, help="AlbertModel, AlbertForMaskedLM, ... (default: the config's)")
    t.add_argument("--opset", type=int, default=18)
    t.add_argument("--quantize", choices=["int8"], default=None, help="dynamic int8 weights for ONNX Runtime")
    t.add_argument("--share-weights", action="store_true",
                   help="store no weights: read them from the model directory's model.safetensors (--out must be "
                        "in that directory; albert fill-mask then starts through ONNX Runtime, without torch)")
    t.set_defaults(func=_export_onnx)

    t = sub.add_parser("convert", help="convert an original TensorFlow ALBERT checkpoint (no TensorFlow needed)")
    t.add_argument("--from-tf", required=True, help="checkpoint prefix (PREFIX.index + PREFIX.data-*)")
    t.add_argument("--config", required=True, help="the original albert_config.json")
    t.add_argument("--out", required=True)
    t.set_defaults(func=_convert)

    t = inference("choose", "pick an option (a fine-tuned multiple-choice model)", _choose, texts=False)
    t.add_argument("--article", default=None)
    t.add_argument("--question", default=None)
    t.add_argument("--options", nargs="+", default=None)

    t = sub.add_parser("finetune", help="fine-tune on a labelled task (settings as --key value)")
    t.add_argument("--task", required=True, choices=["classification", "regression", "multi-label",
                                                     "token-classification", "multiple-choice", "qa", "qa-v2"])
    t.add_argument("--train", required=True)
    t.add_argument("--dev", default=None)
    t.add_argument("--model", default="albert-small-en")
    t.add_argument("--out", required=True)
    t.add_argument("--recipe", default=None, help="the paper's hyperparameters for a task, e.g. mrpc, sst-2")
    t.add_argument("--config", default=None, help="settings YAML")
    t.add_argument("--resume", action="store_true")
    t.set_defaults(func=_finetune, takes_extra=True)

    t = sub.add_parser("evaluate", help="score a fine-tuned model on a labelled file")
    t.add_argument("--model", required=True)
    t.add_argument("--data", required=True)
    add_runtime_args(t)
    t.set_defaults(func=_evaluate)

    t = sub.add_parser("predict", help="predictions of a fine-tuned model, one JSON line per input row")
    t.add_argument("--model", required=True)
    t.add_argument("--data", required=True)
    add_runtime_args(t)
    t.set_defaults(func=_predict)
