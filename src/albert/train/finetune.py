"""`albert finetune / evaluate / predict`: a task's featurizer trained through the one loop.

The fine-tuned directory is a transformers checkpoint of the matching AlbertFor* class whose
config records the task (`albert_task`: kind, labels, text fields, max length), so evaluate and
predict need nothing else. Evaluation and prediction run the model as albert.runtime.policy prepares it
for inference (bf16 frozen, int8 quantized), the same as the pipelines.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from albert.data.pretraining import ExampleSettings, create_segment_pairs
from albert.errors import ConfigError, DataError, InputError
from albert.io.files import base_suffix, iter_documents
from albert.io.output_dirs import check_new_output, claim_output
from albert.modeling.early_exit import ExitPolicy
from albert.modeling.heads import MODEL_CLASSES, EarlyExitHead
from albert.modeling.pretrained import CONFIG_NAME, AlbertPreTrainedModel
from albert.runtime.policy import Runtime, prepare_for_inference, resolve_runtime
from albert.tasks.base import Featurizer
from albert.tasks.choice import ChoiceFeatures, read_questions
from albert.tasks.qa import QAFeatures, read_qa
from albert.tasks.registry import get_kind
from albert.tasks.sequence import ORDER_LABELS, Example, SequenceFeatures, label_set, read_examples
from albert.tasks.tokens import TokenFeatures, read_tagged, tag_set
from albert.tokenization.tokenizer import AlbertTokenizer
from albert.train.cards import card_inputs, write_finetune_card
from albert.train.finetune_settings import EARLY_EXIT_TASKS, FinetuneSettings
from albert.train.loop import EpochOrder, train
from albert.train.settings import build_settings, run_dir_of

logger = logging.getLogger(__name__)

# the seed of the pairs cut from a text file (sentence order): fine-tuning, evaluate and predict cut the same pairs
ORDER_PAIRS_SEED = 20191026

@dataclass
class TaskSpec:
    """What a fine-tuned directory records (config.albert_task), enough to rebuild its featurizer."""

    task: str
    max_seq_length: int
    fields: list[str | None] = dataclasses.field(default_factory=list)
    label_field: str = "label"
    doc_stride: int = 128
    max_answer_length: int = 30
    answerability_head: bool = False


def build_featurizer(spec: TaskSpec, tokenizer: AlbertTokenizer, labels: list[str],
                     eval_batch_size: int = 64) -> Featurizer:
    kind = get_kind(spec.task)
    if kind.head == "AlbertForSequenceClassification":
        return SequenceFeatures(spec.task, tokenizer, len(labels) or 1, spec.max_seq_length, eval_batch_size)
    if kind.name == "token-classification":
        return TokenFeatures(tokenizer, labels, spec.max_seq_length, eval_batch_size)
    if kind.task == "question-answering":
        return QAFeatures(tokenizer, spec.max_seq_length, eval_batch_size, spec.doc_stride, spec.max_answer_length,
                          version_2=spec.task == "qa-v2", answerability_head=spec.answerability_head)
    return ChoiceFeatures(tokenizer, spec.max_seq_length, max(1, eval_batch_size // 4))


def read_task_rows(spec: TaskSpec, path: str | Path, labels: list[str], tokenizer: AlbertTokenizer,
                   need_labels: bool = True, tsv_layout: str | None = None) -> tuple[list[Any], TaskSpec]:
    kind = get_kind(spec.task)
    if kind.name == "sentence-order" and base_suffix(path) == ".txt":  # documents, cut into pairs
        return read_order_pairs(path, tokenizer, spec.max_seq_length), dataclasses.replace(spec, fields=["first",
                                                                                                       "second"])
    if kind.head == "AlbertForSequenceClassification":
        fields = tuple(spec.fields) if spec.fields else None
        rows, found = read_examples(path, spec.task, labels, spec.label_field, fields,  # type: ignore[arg-type]
                                    tsv_layout, need_labels)
        return rows, dataclasses.replace(spec, fields=list(found))
    if kind.name == "token-classification":
        return read_tagged(path, need_labels, labels), spec
    if kind.task == "question-answering":
        return read_qa(path, need_labels), spec
    return read_questions(path, need_labels), spec


def read_order_pairs(path: str | Path, tokenizer: AlbertTokenizer, max_seq_length: int) -> list[Example]:
    """Sentence order's examples from a text file's documents (a blank line ends one): pairs of consecutive
    segments, in order or swapped at random, cut as pretraining cuts SOP's (albert.data.pretraining), from a fixed
    seed so that every read of a file gives the same pairs."""
    rng = np.random.default_rng(ORDER_PAIRS_SEED)
    short = ExampleSettings().short_seq_prob
    examples: list[Example] = []
    for d, document in enumerate(iter_documents(path), 1):
        sentences = [np.asarray(e.ids, dtype=np.int64) for e in tokenizer.encode_pieces(document)]
        for pair in create_segment_pairs(sentences, max_seq_length - 3, short, rng):  # [CLS] A [SEP] B [SEP]
            a, b = tokenizer.decode(pair.a), tokenizer.decode(pair.b)
            if a and b:  # a segment of a lone word boundary decodes to nothing, and has no order
                examples.append(Example(a, b, pair.sop_label, f"{path}: document {d}"))
    if not examples:
        raise DataError(f"{path}: no pairs of segments to order (a document needs two tokens or more)")
    return examples


def head_config(spec: TaskSpec, labels: list[str]) -> dict[str, Any]:
    """The config fields a fine-tuned directory records: its task, and its head's labels and problem type."""
    overrides: dict[str, Any] = {"albert_task": dataclasses.asdict(spec)}
    kind = get_kind(spec.task)
    if kind.problem_type is not None:
        overrides["num_labels"] = len(labels) or 1
        overrides["problem_type"] = kind.problem_type
    if labels:
        overrides["id2label"] = dict(enumerate(labels))
        overrides["label2id"] = {v: i for i, v in enumerate(labels)}
    return overrides


def model_class(spec: TaskSpec) -> type[AlbertPreTrainedModel]:
    if spec.answerability_head:
        return MODEL_CLASSES["AlbertForQuestionAnsweringWithAnswerability"]
    return MODEL_CLASSES[get_kind(spec.task).head]


class FinetuneData:
    """A featurizer's training features served to the one loop in seeded epoch order, and its dev examples
    evaluated at the loop's eval steps. The loss, its statistics and the metrics are the featurizer's."""

    def __init__(self, features: Featurizer, train: list[Any], dev: list[Any] | None, batch_size: int,
                 seed: int) -> None:
        self.features = features
        self.train = features.featurize_train(train)
        self.dev = dev
        self.batch_size = batch_size
        self.stat_names = features.stat_names
        self.order = EpochOrder(len(self.train), seed, salt=7)

    def step_batches(self, step: int, rank: int, world: int, micro_batch: int) -> list[dict[str, Tensor]]:
        return [self.features.collate([self.train[i] for i in rows])
                for rows in self.order.micro_batches(self.batch_size, rank, world, micro_batch)]

    def data_state(self) -> dict[str, Any]:
        return self.order.state()

    def load_data_state(self, state: dict[str, Any]) -> None:
        self.order.load_state(state)

    def normalizers(self, batches: list[dict[str, Tensor]]) -> Tensor:
        return torch.tensor([max(1.0, sum(self.features.units(b) for b in batches))], dtype=torch.float64)

    def loss(self, model: nn.Module, batch: dict[str, Tensor], norm: Tensor) -> tuple[Tensor, Tensor]:
        return self.features.loss(model, batch, norm)

    def summarize(self, s: dict[str, float]) -> dict[str, float]:
        return self.features.summarize(s)

    def evaluate(self, model: Any, device: torch.device, dtype: torch.dtype | None) -> dict[str, float]:
        if not self.dev:
            return {}
        return {f"eval_{k}": v for k, v in self.features.score_examples(model, self.dev, device, dtype).items()}


def finetune(settings: FinetuneSettings, resume: bool = False,
             on_step: Callable[[int], None] | None = None) -> Path:
    """Train the task's head through the one loop; --out gets the model, its tokenizer, dev_results.json and a
    model card (README.md), written only at the end; checkpoints and metrics live in the run directory."""
    out = Path(settings.out)
    check_new_output(out, "finetune")  # before reading data or loading the model; --out == --model is refused
    tokenizer = AlbertTokenizer.from_pretrained(settings.model)
    _check_positions(settings)
    layout = settings.tsv_layout or None
    spec = TaskSpec(settings.task, settings.max_seq_length, label_field=settings.label_field,
                    doc_stride=settings.doc_stride, max_answer_length=settings.max_answer_length,
                    answerability_head=settings.answerability_head)
    labels = _training_labels(settings, layout)
    train_rows, spec = read_task_rows(spec, settings.train, labels, tokenizer, tsv_layout=layout)
    if not train_rows:
        raise DataError(f"{settings.train}: no examples")
    dev_rows = read_task_rows(spec, settings.dev, labels, tokenizer, tsv_layout=layout)[0] if settings.dev else None
    task = FinetuneData(build_featurizer(spec, tokenizer, labels, settings.eval_batch_size), train_rows, dev_rows,
                        settings.batch_size, settings.seed)
    steps_per_epoch = max(1, len(task.train) // settings.batch_size)  # QA: windows, not questions
    resolved = dataclasses.replace(
        settings,
        max_steps=settings.max_steps or max(1, math.ceil(settings.epochs * steps_per_epoch)),
        eval_every=settings.eval_every or steps_per_epoch,
        save_every=settings.save_every or steps_per_epoch,
        run_dir=str(run_dir_of(settings)),
    )
    torch.manual_seed(settings.seed)
    exits = {"early_exit": settings.exit_classifiers} if settings.early_exit else {}
    fill = sop_head_weight if settings.task == "sentence-order" else None
    model = model_class(spec).from_pretrained(settings.model, **head_config(spec, labels), **exits, fill_missing=fill)
    model.train()
    train(resolved, model, task, resume=resume, on_step=on_step)
    scores: dict[str, float] | None = None
    if dev_rows:
        scores = _final_eval(Path(resolved.run_dir) / "metrics.jsonl", resolved.max_steps)
        if scores is None:
            run = resolve_runtime(resolved.device, resolved.precision)
            scores = task.features.score_examples(model, dev_rows, run.device, run.autocast_dtype)
        logger.info("dev: %s", scores)
    with claim_output(out, "finetune") as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if scores is not None:
            (staging / "dev_results.json").write_text(json.dumps(scores, indent=2) + "\n")
        defaults = build_settings(FinetuneSettings, {k: v for k, v in card_inputs(resolved).items() if v is not None})
        head = model_class(TaskSpec(settings.task, settings.max_seq_length,
                                    answerability_head=settings.answerability_head)).__name__
        write_finetune_card(staging, resolved, defaults, head, labels, scores, len(train_rows), len(dev_rows or []))
    return out


def _check_positions(settings: FinetuneSettings) -> None:
    """max_seq_length within the model's positions: said before any data is read."""
    from albert.modeling.config import AlbertConfig
    from albert.modeling.pretrained import resolve_model_dir

    positions = AlbertConfig.from_json_file(resolve_model_dir(settings.model) / CONFIG_NAME,
                                            strict=False).max_position_embeddings
    if settings.max_seq_length > positions:
        raise ConfigError(f"max_seq_length {settings.max_seq_length} exceeds the model's {positions} positions")


def _training_labels(settings: FinetuneSettings, layout: Any) -> list[str]:
    """The head's labels, read from the training file (classes, tags) or fixed by the task (sentence order)."""
    if settings.task in ("classification", "multi-label"):
        return label_set(settings.train, settings.task, settings.label_field, layout)
    if settings.task == "token-classification":
        return tag_set(settings.train)
    if settings.task == "sentence-order":
        return list(ORDER_LABELS)
    return []


def sop_head_weight(key: str) -> str | None:
    """Sentence order's classifiers (each pass's, with early exit) start as pretraining's SOP head where the model
    fine-tuned from has one: the same question on the same pooled [CLS] state, so fine-tuning starts from what
    pretraining learned rather than from chance."""
    found = re.fullmatch(r"(?:classifier|exit_classifiers\.\d+)\.(weight|bias)", key)
    return f"sop_classifier.classifier.{found.group(1)}" if found else None


def _final_eval(metrics: Path, step: int) -> dict[str, float] | None:
    """The dev scores the loop already measured at the last step (the loop evaluates there), if any."""
    if not metrics.is_file():
        return None
    from albert.train.plot import read_records

    for record in reversed(read_records(metrics)):
        if record.get("kind") == "eval" and record.get("step") == step:
            return {k.removeprefix("eval_"): v for k, v in record.items() if k.startswith("eval_")}
    return None


def task_spec_of(model_dir: str | Path) -> tuple[Path, TaskSpec]:
    """A fine-tuned directory (resolved) and the task it records (config.albert_task)."""
    from albert.modeling.config import AlbertConfig
    from albert.modeling.pretrained import resolve_model_dir

    directory = resolve_model_dir(model_dir)
    raw = AlbertConfig.from_json_file(directory / CONFIG_NAME).albert_task
    if not raw:
        raise DataError(f"{model_dir} records no fine-tuning task (config.albert_task); was it made by "
                        "`albert finetune`?")
    return directory, TaskSpec(**raw)


def load_task_model(model_dir: str | Path, device: str = "auto", precision: str = "auto", compile: bool = False,
                    exit_policy: ExitPolicy | None = None
                    ) -> tuple[AlbertPreTrainedModel, Featurizer, TaskSpec, Runtime]:
    """A fine-tuned directory's model, prepared for inference in `precision` (and compiled with `compile`), and its
    task's featurizer; with an active `exit_policy` the featurizer's forwards run with it (the model checks it)."""
    directory, spec = task_spec_of(model_dir)
    runtime = resolve_runtime(device, precision)
    model = model_class(spec).from_pretrained(directory)
    if exit_policy is not None and exit_policy.active:
        if not isinstance(model, EarlyExitHead):
            raise InputError(f"early exit is for the tasks that classify a whole input ({', '.join(EARLY_EXIT_TASKS)})"
                             f"; this model's task is {spec.task}")
    model = prepare_for_inference(model, runtime, compile)
    features = build_featurizer(spec, AlbertTokenizer.from_pretrained(directory), labels_of(model))
    if exit_policy is not None and exit_policy.active:
        features = features.with_exit_policy(exit_policy)
    return model, features, spec, runtime


def labels_of(model: AlbertPreTrainedModel) -> list[str]:
    cfg = model.config
    return [cfg.id2label[i] for i in range(len(cfg.id2label))] if cfg.id2label else []


def evaluate_dir(model_dir: str | Path, data: str | Path, device: str = "auto", precision: str = "auto",
                 compile: bool = False, exit_policy: ExitPolicy | None = None) -> dict[str, float]:
    """The task's metrics on a labelled file; with an active `exit_policy` (a model fine-tuned with early exit),
    each input stops where the policy says, and mean_passes is among the metrics."""
    model, features, spec, runtime = load_task_model(model_dir, device, precision, compile, exit_policy)
    rows, _ = read_task_rows(spec, data, labels_of(model), features.tokenizer)
    return features.score_examples(model, rows, runtime.device)


def predict_dir(model_dir: str | Path, data: str | Path, device: str = "auto", precision: str = "auto",
                compile: bool = False, exit_policy: ExitPolicy | None = None) -> list[dict[str, Any]]:
    """One answer per row; with an active `exit_policy`, each says the passes its input ran."""
    model, features, spec, runtime = load_task_model(model_dir, device, precision, compile, exit_policy)
    rows, _ = read_task_rows(spec, data, labels_of(model), features.tokenizer, need_labels=False)
    return features.predict_rows(model, rows, runtime.device)
