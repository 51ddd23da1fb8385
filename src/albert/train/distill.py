"""Distillation through the one training loop: knowledge moved from a teacher that has it into an ALBERT student.

Masked LM (DistilBERT's soft targets): an ALBERT teacher with the same vocabulary and a student with fewer passes of
the shared layer (or a narrower one) read the same masked pretraining batches; at the masked positions the student
matches the teacher's distribution softened by a temperature (KL, scaled by T²) beside the true tokens'
cross-entropy, and SOP keeps its own loss. A student with fewer passes can start as the teacher itself — the same
shared weights run fewer times — which only ALBERT's sharing makes free.

A task (Hinton et al.'s soft labels): a fine-tuned teacher and a smaller student read the task's training rows
through the task's own featurizer; beside the task's loss the student matches the teacher's outputs — class,
choice, tag and span distributions softened by a temperature (KL, scaled by T²), a regression's value (MSE), the
answerability logit (binary KL to the teacher's probability). The student is saved as a fine-tuned directory of the
task.

Sentence vectors (Reimers & Gurevych 2020, across tokenizers): the student reads each text with its own tokenizer
and its mean-pooled vector — what `albert embed` computes — regresses onto the teacher's vector of the same text
(MSE), optionally with an in-batch similarity term (each student vector must be nearer its own teacher vector than
the batch's other texts'). The teacher's vectors are computed once and cached on disk under the teacher's and the
texts' SHA-256, so a resumed or repeated run reads them instead of recomputing them. `fit_for_finetuning` (`albert
convert --for-finetuning`) then readies such a student for fine-tuning without moving its normalised vectors.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from albert.data.texts import select_texts
from albert.errors import ConfigError, DataError
from albert.io.output_dirs import check_new_output, claim_output
from albert.modeling.pretrained import AlbertModel, AlbertPreTrainedModel, saved_architecture
from albert.tokenization.tokenizer import AlbertTokenizer
from albert.train.cards import write_distill_card
from albert.train.distill_settings import DistillSettings
from albert.train.loop import train
from albert.train.sentence_vectors import SentenceVectorTask, teacher_vectors, weights_sha256
from albert.train.settings import run_dir_of
from albert.train.soft_targets import MaskedLMDistillTask, TaskDistillTask

__all__ = ["DistillSettings", "distill"]

logger = logging.getLogger(__name__)


def distill(settings: DistillSettings, resume: bool = False,
            on_step: Callable[[int], None] | None = None) -> Path:
    """Distil the teacher into the student through the one loop; --out gets the student, its tokenizer and a model
    card naming the teacher (path, SHA-256, licence), the data, the steps and the CPU hours."""
    out = Path(settings.out)
    check_new_output(out, "distill")
    settings = dataclasses.replace(settings, run_dir=str(run_dir_of(settings)))
    tokenizer = AlbertTokenizer.from_pretrained(settings.student)
    build = {"sentence-vectors": _sentence_vectors, "masked-lm": _masked_lm, "task": _task}[settings.kind]
    model, task, about = build(settings, tokenizer)
    began = time.perf_counter()
    try:
        train(settings, model, task, resume=resume, on_step=on_step)
    finally:
        close = getattr(getattr(task, "base", None), "close", None)
        if close is not None:
            close()
    scores = task.evaluate(model, next(model.parameters()).device, None)
    logger.info("held-out: %s", scores)
    with claim_output(out, "distill") as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "distill_results.json").write_text(json.dumps(scores, indent=2) + "\n")
        if settings.kind == "task" and scores:  # as a fine-tuned directory has them
            dev = {k.removeprefix("eval_"): v for k, v in scores.items()}
            (staging / "dev_results.json").write_text(json.dumps(dev, indent=2) + "\n")
        write_distill_card(staging, settings, weights_sha256(Path(settings.teacher)), about, scores,
                           time.perf_counter() - began)
    return out


def _sentence_vectors(settings: DistillSettings, tokenizer: AlbertTokenizer) -> tuple[AlbertPreTrainedModel, Any, str]:
    texts = select_texts(settings.data, settings.vectors.max_texts, settings.vectors.short_share, settings.seed,
                         settings.vectors.min_words)
    if len(texts) <= settings.vectors.eval_texts:
        raise DataError(f"{len(texts)} texts in --data: more than eval_texts ({settings.vectors.eval_texts}) are "
                        "needed")
    torch.manual_seed(settings.seed)
    model = _student(AlbertModel, settings)
    vectors = torch.from_numpy(teacher_vectors(settings, texts))
    if vectors.shape[1] != model.config.hidden_size:
        raise ConfigError(f"the teacher's vectors have {vectors.shape[1]} dimensions and the student's "
                          f"{model.config.hidden_size}: sentence-vector distillation needs a teacher as wide as the "
                          "student")
    ids = tokenizer(texts, truncation=True, max_length=settings.max_seq_length)["input_ids"]
    held = settings.vectors.eval_texts
    task = SentenceVectorTask(ids[held:], vectors[held:], ids[:held], vectors[:held], settings,
                              tokenizer.pad_token_id)
    return model, task, f"{len(texts):,} texts ({held:,} held out)"


def _masked_lm(settings: DistillSettings, tokenizer: AlbertTokenizer) -> tuple[AlbertPreTrainedModel, Any, str]:
    from albert.modeling.heads import AlbertForPreTraining
    from albert.train.pretrain import PretrainTask
    from albert.train.settings import PretrainSettings

    if len(settings.data) != 1:
        raise ConfigError("masked-lm distillation reads one directory made by `albert data prepare` (--data DIR)")
    architecture = saved_architecture(settings.teacher)
    if architecture not in (None, "AlbertForPreTraining", "AlbertForMaskedLM"):
        raise ConfigError(f"masked-lm distillation needs a teacher with a masked-LM head (a pretraining or masked-LM "
                          f"model); {settings.teacher} is an {architecture}")
    # its masked-LM head must be the checkpoint's own (a random one would teach noise); SOP's may be missing
    teacher = AlbertForPreTraining.from_pretrained(settings.teacher,
                                                   allow_missing=lambda k: k.startswith("sop_classifier.")).eval()
    if teacher.config.vocab_size != tokenizer.vocab_size:
        raise ConfigError(f"masked-lm distillation needs one vocabulary: the teacher has {teacher.config.vocab_size} "
                          f"pieces, the student's tokenizer {tokenizer.vocab_size}")
    torch.manual_seed(settings.seed)
    model = _student(AlbertForPreTraining, settings)
    pretraining = PretrainSettings(data=settings.data[0], run_dir=settings.run_dir,
                                   max_seq_length=settings.max_seq_length, batch_size=settings.batch_size,
                                   seed=settings.seed, eval_examples=settings.soft.eval_examples)
    task = MaskedLMDistillTask(PretrainTask(pretraining, tokenizer, model.config), teacher, settings)
    return model, task, f"`albert data prepare` shards in {settings.data[0]}"


def _task(settings: DistillSettings, tokenizer: AlbertTokenizer) -> tuple[AlbertPreTrainedModel, Any, str]:
    from albert.train.finetune import (
        FinetuneData,
        build_featurizer,
        head_config,
        labels_of,
        model_class,
        read_task_rows,
        task_spec_of,
    )

    if not 1 <= len(settings.data) <= 2:
        raise ConfigError("task distillation reads the training file and optionally the dev file (--data TRAIN [DEV])")
    directory, spec = task_spec_of(settings.teacher)  # the teacher must be a fine-tuned directory
    teacher = model_class(spec).from_pretrained(directory).eval()
    if teacher.config.vocab_size != tokenizer.vocab_size:
        raise ConfigError(f"task distillation needs one vocabulary: the teacher has {teacher.config.vocab_size} "
                          f"pieces, the student's tokenizer {tokenizer.vocab_size}")
    labels = labels_of(teacher)
    train_rows, spec = read_task_rows(spec, settings.data[0], labels, tokenizer)
    dev_rows = read_task_rows(spec, settings.data[1], labels, tokenizer)[0] if len(settings.data) > 1 else None
    if not train_rows:
        raise DataError(f"{settings.data[0]}: no examples")
    data = FinetuneData(build_featurizer(spec, tokenizer, labels), train_rows, dev_rows, settings.batch_size,
                        settings.seed)
    torch.manual_seed(settings.seed)
    model = _student(model_class(spec), settings, **head_config(spec, labels))
    return model, TaskDistillTask(data, teacher, settings), f"{len(train_rows):,} training rows ({spec.task})"


def _student(cls: Any, settings: DistillSettings, **head: Any) -> Any:
    """The student, with --student_overrides on its config, checked to read --max_seq_length tokens."""
    model = cls.from_pretrained(settings.student, **head, **settings.student_overrides)
    positions = model.config.max_position_embeddings
    if settings.max_seq_length > positions:
        raise ConfigError(f"max_seq_length {settings.max_seq_length} exceeds the student's {positions} positions")
    return model
