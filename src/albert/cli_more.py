"""Subcommands beyond the core: fine-tuning, evaluation and prediction."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
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


def add_commands(sub: Any, add_runtime_args: Callable[[argparse.ArgumentParser], None]) -> None:
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
