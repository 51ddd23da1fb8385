"""ALBERT (A Lite BERT) in PyTorch: model, tokenizer, pretraining, fine-tuning and fast inference."""

from albert.config import AlbertConfig
from albert.heads import (
    AlbertForMaskedLM,
    AlbertForMultipleChoice,
    AlbertForPreTraining,
    AlbertForQuestionAnswering,
    AlbertForQuestionAnsweringWithAnswerability,
    AlbertForSequenceClassification,
    AlbertForTokenClassification,
    AlbertModel,
    AlbertPreTrainedModel,
)
from albert.inference.pipelines import pipeline
from albert.tokenizer import AlbertTokenizer

__version__ = "0.1.0"

__all__ = [
    "AlbertConfig",
    "AlbertForMaskedLM",
    "AlbertForMultipleChoice",
    "AlbertForPreTraining",
    "AlbertForQuestionAnswering",
    "AlbertForQuestionAnsweringWithAnswerability",
    "AlbertForSequenceClassification",
    "AlbertForTokenClassification",
    "AlbertModel",
    "AlbertPreTrainedModel",
    "AlbertTokenizer",
    "pipeline",
]
