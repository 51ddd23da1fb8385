"""`albert finetune / evaluate / predict`: task objects trained through the one loop.

The fine-tuned directory is a transformers checkpoint of the matching AlbertFor* class whose
config records the task (`albert_task`: kind, labels, text fields, max length), so evaluate and
predict need nothing else.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from albert.data.reader import DataError
from albert.heads import AlbertForSequenceClassification
from albert.inference.pipelines import resolve_runtime
from albert.tasks.sequence import KINDS, SequenceTask, label_set, read_examples
from albert.tokenizer import AlbertTokenizer
from albert.train.loop import train
from albert.train.settings import SettingsError, TrainSettings

logger = logging.getLogger(__name__)

# The paper's fine-tuning hyperparameters (REFERENCE §6): lr, batch, steps, warmup, max length.
RECIPES: dict[str, dict[str, Any]] = {
    "sst-2": dict(learning_rate=1e-5, batch_size=32, max_steps=20935, warmup_steps=1256, max_seq_length=512),
    "mnli": dict(learning_rate=3e-5, batch_size=128, max_steps=10000, warmup_steps=1000, max_seq_length=512),
    "cola": dict(learning_rate=1e-5, batch_size=16, max_steps=5336, warmup_steps=320, max_seq_length=512),
    "qnli": dict(learning_rate=1e-5, batch_size=32, max_steps=33112, warmup_steps=1986, max_seq_length=512),
    "qqp": dict(learning_rate=5e-5, batch_size=128, max_steps=14000, warmup_steps=1000, max_seq_length=512),
    "rte": dict(learning_rate=3e-5, batch_size=32, max_steps=800, warmup_steps=200, max_seq_length=512),
    "sts-b": dict(learning_rate=2e-5, batch_size=16, max_steps=3598, warmup_steps=214, max_seq_length=512),
    "mrpc": dict(learning_rate=2e-5, batch_size=32, max_steps=800, warmup_steps=200, max_seq_length=512),
    "squad-v1.1": dict(learning_rate=5e-5, batch_size=48, max_steps=3649, warmup_steps=365, max_seq_length=384),
    "squad-v2.0": dict(learning_rate=3e-5, batch_size=48, max_steps=8144, warmup_steps=814, max_seq_length=512),
    "race": dict(learning_rate=2e-5, batch_size=32, max_steps=12000, warmup_steps=1000, max_seq_length=512),
}


@dataclass
class FinetuneSettings(TrainSettings):
    task: Literal["classification", "regression", "multi-label"] = "classification"
    train: str = ""
    dev: str = ""
    model: str = "albert-small-en"
    out: str = ""
    max_seq_length: int = 128
    epochs: float = 3.0  # used when max_steps is 0
    label_field: str = "label"
    tsv_layout: str = ""
    eval_batch_size: int = 64
    # fine-tuning defaults differ from pretraining's
    optimizer: Literal["lamb", "adamw", "adamw_original"] = "adamw"  # type: ignore[assignment]
    learning_rate: float = 2e-5
    batch_size: int = 32
    max_steps: int = 0
    warmup_fraction: float = 0.1
    eval_every: int = 0  # 0: once per epoch
    save_every: int = 0  # 0: once per epoch
    keep_checkpoints: int = 1

    def __post_init__(self) -> None:
        if not self.train or not self.out:
            raise SettingsError("finetune needs --train FILE and --out DIR")
        if self.max_steps < 0 or self.epochs <= 0:
            raise SettingsError("max_steps must be >= 0 and epochs > 0")
        saved, self.max_steps = self.max_steps, max(self.max_steps, 1)
        super().__post_init__()
        self.max_steps = saved


def apply_recipe(values: dict[str, Any]) -> dict[str, Any]:
    """A named recipe's values, overridden by anything set explicitly."""
    name = values.pop("recipe", None)
    if not name:
        return values
    if name not in RECIPES:
        raise SettingsError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    return {**RECIPES[name], **values}


def finetune(settings: FinetuneSettings, resume: bool = False) -> Path:
    if settings.task not in KINDS:
        raise SettingsError(f"task {settings.task!r} is not available yet; available: {', '.join(KINDS)}")
    tokenizer = AlbertTokenizer.from_pretrained(settings.model)
    kind = settings.task
    layout = settings.tsv_layout or None
    labels = [] if kind == "regression" else label_set(settings.train, kind, settings.label_field, layout)
    train_ex, fields = read_examples(settings.train, kind, labels, settings.label_field, tsv_layout=layout)
    dev_ex = (read_examples(settings.dev, kind, labels, settings.label_field, fields, layout)[0]
              if settings.dev else None)
    num_labels = 1 if kind == "regression" else len(labels)
    task = SequenceTask(kind, tokenizer, train_ex, dev_ex, num_labels, settings.max_seq_length, settings.batch_size,
                        settings.seed, settings.eval_batch_size)
    steps_per_epoch = max(1, len(train_ex) // settings.batch_size)
    resolved = dataclasses.replace(
        settings,
        max_steps=settings.max_steps or max(1, math.ceil(settings.epochs * steps_per_epoch)),
        eval_every=settings.eval_every or steps_per_epoch,
        save_every=settings.save_every or steps_per_epoch,
        run_dir=str(Path(settings.out) / "run"),
    )
    overrides: dict[str, Any] = {
        "num_labels": num_labels,
        "problem_type": {"classification": "single_label_classification", "regression": "regression",
                         "multi-label": "multi_label_classification"}[kind],
        "albert_task": {"task": kind, "fields": list(fields), "max_seq_length": settings.max_seq_length,
                        "label_field": settings.label_field},
    }
    if labels:
        overrides["id2label"] = dict(enumerate(labels))
        overrides["label2id"] = {v: i for i, v in enumerate(labels)}
    torch.manual_seed(settings.seed)
    model = AlbertForSequenceClassification.from_pretrained(settings.model, **overrides)
    model.train()
    train(resolved, model, task, resume=resume)
    out = Path(settings.out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if dev_ex:
        device, dtype = _runtime(resolved)
        scores = task.score(task.predict_logits(model, dev_ex, device, dtype), dev_ex)
        (out / "dev_results.json").write_text(json.dumps(scores, indent=2) + "\n")
        logger.info("dev: %s", scores)
    return out


def _runtime(settings: TrainSettings) -> tuple[torch.device, torch.dtype | None]:
    device, dtype = resolve_runtime(settings.device, "bf16" if settings.precision == "bf16" else "fp32")
    return device, (dtype if dtype == torch.bfloat16 else None)


def load_task_model(model_dir: str | Path) -> tuple[AlbertForSequenceClassification, AlbertTokenizer, dict]:
    model = AlbertForSequenceClassification.from_pretrained(model_dir)
    spec = model.config.albert_task
    if not spec:
        raise DataError(f"{model_dir} records no fine-tuning task (config.albert_task); was it made by "
                        "`albert finetune`?")
    return model, AlbertTokenizer.from_pretrained(model_dir), spec


def _task_for(model: AlbertForSequenceClassification, tok: AlbertTokenizer, spec: dict) -> SequenceTask:
    return SequenceTask(spec["task"], tok, [], None, model.config.num_labels, spec["max_seq_length"], 1, 0)


def evaluate_dir(model_dir: str | Path, data: str | Path, device: str = "auto", precision: str = "auto"
                 ) -> dict[str, float]:
    model, tok, spec = load_task_model(model_dir)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)] if model.config.id2label else []
    examples, _ = read_examples(data, spec["task"], labels, spec.get("label_field", "label"), tuple(spec["fields"]))
    dev, dtype = resolve_runtime(device, precision)
    model.to(dev)
    task = _task_for(model, tok, spec)
    return task.score(task.predict_logits(model, examples, dev, dtype if dtype == torch.bfloat16 else None), examples)


def predict_dir(model_dir: str | Path, data: str | Path, device: str = "auto", precision: str = "auto"
                ) -> list[dict[str, Any]]:
    model, tok, spec = load_task_model(model_dir)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)] if model.config.id2label else []
    examples, _ = read_examples(data, spec["task"], labels, spec.get("label_field", "label"), tuple(spec["fields"]),
                                need_labels=False)
    dev, dtype = resolve_runtime(device, precision)
    model.to(dev)
    task = _task_for(model, tok, spec)
    logits = task.predict_logits(model, examples, dev, dtype if dtype == torch.bfloat16 else None)
    out: list[dict[str, Any]] = []
    for row in logits:
        if spec["task"] == "regression":
            out.append({"score": float(row[0])})
        elif spec["task"] == "multi-label":
            probs = 1 / (1 + np.exp(-row))
            out.append({"labels": [labels[i] for i in np.flatnonzero(probs > 0.5)],
                        "scores": {labels[i]: round(float(p), 6) for i, p in enumerate(probs)}})
        else:
            probs = np.exp(row - row.max())
            probs /= probs.sum()
            best = int(probs.argmax())
            out.append({"label": labels[best], "score": float(probs[best])})
    return out
