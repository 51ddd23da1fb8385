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

import torch

from albert.checkpoint import CONFIG_NAME, SAFE_WEIGHTS_NAME
from albert.data.reader import DataError
from albert.heads import (
    AlbertForMultipleChoice,
    AlbertForQuestionAnswering,
    AlbertForQuestionAnsweringWithAnswerability,
    AlbertForSequenceClassification,
    AlbertForTokenClassification,
    AlbertPreTrainedModel,
)
from albert.inference.pipelines import resolve_runtime
from albert.outputs import check_new_output
from albert.tasks.choice import ChoiceTask, read_questions
from albert.tasks.qa import QATask, read_qa
from albert.tasks.sequence import KINDS, SequenceTask, label_set, read_examples
from albert.tasks.tokens import TokenTask, read_tagged, tag_set
from albert.tokenizer import AlbertTokenizer
from albert.train.loop import train
from albert.train.settings import SettingsError, TrainSettings, build_settings, read_settings_file

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
    task: Literal["classification", "regression", "multi-label", "token-classification", "multiple-choice", "qa",
                  "qa-v2"] = "classification"
    doc_stride: int = 128
    max_answer_length: int = 30
    answerability_head: bool = False  # qa/qa-v2: the original ALBERT's SQuAD 2.0 head (start → end beam, answerability)
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
        if self.answerability_head and self.task not in ("qa", "qa-v2"):
            raise SettingsError("answerability_head is a question-answering head (task qa or qa-v2)")
        saved, self.max_steps = self.max_steps, max(self.max_steps, 1)
        super().__post_init__()
        self.max_steps = saved


def finetune_settings(values: dict[str, Any], config: str | Path | None = None) -> FinetuneSettings:
    """Settings from, lowest priority first: the defaults, a named recipe (`recipe`), a YAML file, `values` (what
    was given explicitly; None means not given)."""
    from_file = read_settings_file(config) if config else {}
    given = {k: v for k, v in values.items() if v is not None}
    name = given.pop("recipe", None) or from_file.pop("recipe", None)
    if name and name not in RECIPES:
        raise SettingsError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    return build_settings(FinetuneSettings, {**(RECIPES[name] if name else {}), **from_file, **given})


TASKS = ("classification", "regression", "multi-label", "token-classification", "multiple-choice", "qa",
         "qa-v2")


@dataclass
class TaskSpec:
    """What a fine-tuned directory records (config.albert_task), enough to rebuild its task object."""

    task: str
    max_seq_length: int
    fields: list[str | None] = dataclasses.field(default_factory=list)
    label_field: str = "label"
    doc_stride: int = 128
    max_answer_length: int = 30
    answerability_head: bool = False


def build_task(spec: TaskSpec, tokenizer: AlbertTokenizer, labels: list[str], train_rows: list[Any],
               dev_rows: list[Any] | None, batch_size: int = 1, seed: int = 0, eval_batch_size: int = 64) -> Any:
    if spec.task in KINDS:
        return SequenceTask(spec.task, tokenizer, train_rows, dev_rows, len(labels) or 1, spec.max_seq_length,
                            batch_size, seed, eval_batch_size)
    if spec.task == "token-classification":
        return TokenTask(tokenizer, train_rows, dev_rows, labels, spec.max_seq_length, batch_size, seed,
                         eval_batch_size)
    if spec.task in ("qa", "qa-v2"):
        return QATask(tokenizer, train_rows, dev_rows, spec.max_seq_length, batch_size, seed, eval_batch_size,
                      spec.doc_stride, spec.max_answer_length, version_2=spec.task == "qa-v2",
                      answerability_head=spec.answerability_head)
    return ChoiceTask(tokenizer, train_rows, dev_rows, spec.max_seq_length, batch_size, seed,
                      max(1, eval_batch_size // 4))


def read_task_rows(spec: TaskSpec, path: str | Path, labels: list[str], need_labels: bool = True,
                   tsv_layout: str | None = None) -> tuple[list[Any], TaskSpec]:
    if spec.task in KINDS:
        fields = tuple(spec.fields) if spec.fields else None
        rows, found = read_examples(path, spec.task, labels, spec.label_field, fields,  # type: ignore[arg-type]
                                    tsv_layout, need_labels)
        return rows, dataclasses.replace(spec, fields=list(found))
    if spec.task == "token-classification":
        return read_tagged(path, need_labels, labels), spec
    if spec.task in ("qa", "qa-v2"):
        return read_qa(path, need_labels), spec
    return read_questions(path, need_labels), spec


MODEL_FOR_TASK = {"classification": AlbertForSequenceClassification, "regression": AlbertForSequenceClassification,
                  "multi-label": AlbertForSequenceClassification,
                  "token-classification": AlbertForTokenClassification, "multiple-choice": AlbertForMultipleChoice,
                  "qa": AlbertForQuestionAnswering, "qa-v2": AlbertForQuestionAnswering}


def model_class(spec: TaskSpec) -> type[AlbertPreTrainedModel]:
    if spec.answerability_head:
        return AlbertForQuestionAnsweringWithAnswerability
    return MODEL_FOR_TASK[spec.task]


def finetune(settings: FinetuneSettings, resume: bool = False) -> Path:
    if settings.task not in TASKS:
        raise SettingsError(f"task {settings.task!r} is not available; available: {', '.join(TASKS)}")
    if not resume:  # --out == --model would replace the pretrained weights
        check_new_output(settings.out, [CONFIG_NAME, SAFE_WEIGHTS_NAME])
    tokenizer = AlbertTokenizer.from_pretrained(settings.model)
    layout = settings.tsv_layout or None
    spec = TaskSpec(settings.task, settings.max_seq_length, label_field=settings.label_field,
                    doc_stride=settings.doc_stride, max_answer_length=settings.max_answer_length,
                    answerability_head=settings.answerability_head)
    if settings.task in ("classification", "multi-label"):
        labels = label_set(settings.train, settings.task, settings.label_field, layout)
    elif settings.task == "token-classification":
        labels = tag_set(settings.train)
    else:
        labels = []
    train_rows, spec = read_task_rows(spec, settings.train, labels, tsv_layout=layout)
    if not train_rows:
        raise DataError(f"{settings.train}: no examples")
    dev_rows = read_task_rows(spec, settings.dev, labels, tsv_layout=layout)[0] if settings.dev else None
    task = build_task(spec, tokenizer, labels, train_rows, dev_rows, settings.batch_size, settings.seed,
                      settings.eval_batch_size)
    steps_per_epoch = max(1, len(task.train) // settings.batch_size)  # QA: windows, not questions
    resolved = dataclasses.replace(
        settings,
        max_steps=settings.max_steps or max(1, math.ceil(settings.epochs * steps_per_epoch)),
        eval_every=settings.eval_every or steps_per_epoch,
        save_every=settings.save_every or steps_per_epoch,
        run_dir=str(Path(settings.out) / "run"),
    )
    overrides: dict[str, Any] = {"albert_task": dataclasses.asdict(spec)}
    if settings.task in KINDS:
        overrides["num_labels"] = len(labels) or 1
        overrides["problem_type"] = {"classification": "single_label_classification", "regression": "regression",
                                     "multi-label": "multi_label_classification"}[settings.task]
    if labels:
        overrides["id2label"] = dict(enumerate(labels))
        overrides["label2id"] = {v: i for i, v in enumerate(labels)}
    torch.manual_seed(settings.seed)
    model = model_class(spec).from_pretrained(settings.model, **overrides)
    model.train()
    train(resolved, model, task, resume=resume)
    out = Path(settings.out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if dev_rows:
        scores = _final_eval(Path(resolved.run_dir) / "metrics.jsonl", resolved.max_steps)
        if scores is None:
            device, dtype = _runtime(resolved)
            scores = task.score_examples(model, dev_rows, device, dtype)
        (out / "dev_results.json").write_text(json.dumps(scores, indent=2) + "\n")
        logger.info("dev: %s", scores)
    return out


def _final_eval(metrics: Path, step: int) -> dict[str, float] | None:
    """The dev scores the loop already measured at the last step (the loop evaluates there), if any."""
    if not metrics.is_file():
        return None
    for line in reversed(metrics.read_text(encoding="utf-8").splitlines()):
        record = json.loads(line) if line.strip() else {}
        if record.get("kind") == "eval" and record.get("step") == step:
            return {k.removeprefix("eval_"): v for k, v in record.items() if k.startswith("eval_")}
    return None


def _runtime(settings: TrainSettings) -> tuple[torch.device, torch.dtype | None]:
    device, dtype = resolve_runtime(settings.device, settings.precision)
    return device, (dtype if dtype == torch.bfloat16 else None)


def load_task_model(model_dir: str | Path, device: str, precision: str) -> tuple[Any, Any, list[str], TaskSpec,
                                                                                  torch.device, torch.dtype | None]:
    from albert.checkpoint import CONFIG_NAME, resolve_model_dir
    from albert.config import AlbertConfig

    directory = resolve_model_dir(model_dir)
    raw = AlbertConfig.from_json_file(directory / CONFIG_NAME).albert_task
    if not raw:
        raise DataError(f"{model_dir} records no fine-tuning task (config.albert_task); was it made by "
                        "`albert finetune`?")
    spec = TaskSpec(**raw)
    model = model_class(spec).from_pretrained(directory)
    cfg = model.config
    labels = [cfg.id2label[i] for i in range(len(cfg.id2label))] if cfg.id2label else []
    tokenizer = AlbertTokenizer.from_pretrained(directory)
    dev, dtype = resolve_runtime(device, precision)
    model.to(dev)
    task = build_task(spec, tokenizer, labels, [], None)
    return model, task, labels, spec, dev, (dtype if dtype == torch.bfloat16 else None)


def evaluate_dir(model_dir: str | Path, data: str | Path, device: str = "auto", precision: str = "auto"
                 ) -> dict[str, float]:
    model, task, labels, spec, dev, dtype = load_task_model(model_dir, device, precision)
    rows, _ = read_task_rows(spec, data, labels)
    return task.score_examples(model, rows, dev, dtype)


def predict_dir(model_dir: str | Path, data: str | Path, device: str = "auto", precision: str = "auto"
                ) -> list[dict[str, Any]]:
    model, task, labels, spec, dev, dtype = load_task_model(model_dir, device, precision)
    rows, _ = read_task_rows(spec, data, labels, need_labels=False)
    return task.predict_rows(model, rows, dev, dtype, labels)
