"""What the heads return: transformers' output classes, field for field (a `ModelOutput` is a dataclass that is
also read by index and by key, as transformers' are)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from albert.modeling.backbone import ModelOutput


@dataclass
class AlbertForPreTrainingOutput(ModelOutput):
    loss: Tensor | None = None
    prediction_logits: Tensor | None = None
    sop_logits: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


@dataclass
class MaskedLMOutput(ModelOutput):
    loss: Tensor | None = None
    logits: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


@dataclass
class SequenceClassifierOutput(ModelOutput):
    """A classifier's outputs; with early exit (albert.modeling.early_exit) also every pass's logits (training) or the
    passes each example ran (inference with an exit policy)."""

    loss: Tensor | None = None
    logits: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None
    exit_logits: Tensor | None = None  # (passes, B, K): the classifier after every pass, training only
    exit_passes: Tensor | None = None  # (B,): the passes each example ran before it stopped


TokenClassifierOutput = MaskedLMOutput
MultipleChoiceModelOutput = SequenceClassifierOutput


@dataclass
class QuestionAnsweringModelOutput(ModelOutput):
    loss: Tensor | None = None
    start_logits: Tensor | None = None
    end_logits: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


@dataclass
class AnswerabilityQAOutput(ModelOutput):
    """The original SQuAD 2.0 head's outputs. Training (start positions given): the masked start logits,
    the end logits given each gold start, and the answerability logits. Inference: the beam of the
    `start_n_top` best starts and, for each, the `end_n_top` best ends (log-probabilities and indices)."""

    loss: Tensor | None = None
    start_logits: Tensor | None = None  # (B, T), -inf-like where p_mask
    end_logits: Tensor | None = None  # training: (B, T)
    cls_logits: Tensor | None = None  # (B,), > 0: the window holds no answer
    start_top_log_probs: Tensor | None = None  # (B, k_start)
    start_top_index: Tensor | None = None  # (B, k_start)
    end_top_log_probs: Tensor | None = None  # (B, k_start, k_end)
    end_top_index: Tensor | None = None  # (B, k_start, k_end)
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


def cross_entropy(logits: Tensor, labels: Tensor, ignore_index: int = -100) -> Tensor:
    """The heads' classification loss, in fp32 whatever the compute dtype (bf16 logits lose the small differences
    a loss near its minimum is made of)."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=ignore_index)
