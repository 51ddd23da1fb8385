"""ALBERT (A Lite BERT) in PyTorch: model, tokenizer, pretraining, fine-tuning and fast inference.

The public names load on first use (PEP 562), so that `import albert.tokenization.tokenizer` or `albert fill-mask`
through ONNX Runtime does not pay for importing torch (1-3 s on a small CPU).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from albert import _moved
from albert.version import __version__  # noqa: F401  (albert.__version__)

_moved.install()  # the import paths of before the re-layout, for one release

# public name → the module that defines it
_EXPORTS = {
    "AlbertConfig": "albert.modeling.config",
    "AlbertForMaskedLM": "albert.modeling.heads",
    "AlbertForMultipleChoice": "albert.modeling.heads",
    "AlbertForPreTraining": "albert.modeling.heads",
    "AlbertForQuestionAnswering": "albert.modeling.qa_heads",
    "AlbertForQuestionAnsweringWithAnswerability": "albert.modeling.qa_heads",
    "AlbertForSequenceClassification": "albert.modeling.heads",
    "AlbertForTokenClassification": "albert.modeling.heads",
    "AlbertModel": "albert.modeling.pretrained",
    "AlbertPreTrainedModel": "albert.modeling.pretrained",
    "AlbertTokenizer": "albert.tokenization.tokenizer",
    "pipeline": "albert.inference.pipelines",
}
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

if TYPE_CHECKING:
    from albert.inference.pipelines import pipeline
    from albert.modeling.config import AlbertConfig
    from albert.modeling.heads import (
        AlbertForMaskedLM,
        AlbertForMultipleChoice,
        AlbertForPreTraining,
        AlbertForSequenceClassification,
        AlbertForTokenClassification,
    )
    from albert.modeling.pretrained import AlbertModel, AlbertPreTrainedModel
    from albert.modeling.qa_heads import AlbertForQuestionAnswering, AlbertForQuestionAnsweringWithAnswerability
    from albert.tokenization.tokenizer import AlbertTokenizer


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'albert' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
