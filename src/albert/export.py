"""ONNX export with dynamic batch and sequence axes, the shared layer stored once.

Older exporters traced each of the 12 (or 24) layer passes with its own copy of the shared weights
(albert-base: 45 MB of weights → 340 MB of ONNX; xlarge past the 2 GB protobuf limit). Here the shared
layer's weights are prepared once per forward (albert.model.LayerWeights), so every pass of the
exported graph reads the same initializers.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from albert.checkpoint import CONFIG_NAME, resolve_model_dir
from albert.config import AlbertConfig
from albert.heads import MODEL_CLASSES, AlbertPreTrainedModel

logger = logging.getLogger(__name__)

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUTS = {
    "AlbertModel": ("last_hidden_state", "pooler_output"),
    "AlbertForPreTraining": ("prediction_logits", "sop_logits"),
    "AlbertForMaskedLM": ("logits",),
    "AlbertForSequenceClassification": ("logits",),
    "AlbertForTokenClassification": ("logits",),
    "AlbertForQuestionAnswering": ("start_logits", "end_logits"),
    "AlbertForMultipleChoice": ("logits",),
}


class ExportError(ValueError):
    """The model cannot be exported as asked."""


class _Outputs(nn.Module):
    """The model with plain tensor outputs, as ONNX needs."""

    def __init__(self, model: AlbertPreTrainedModel, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return tuple(getattr(out, n) for n in self.names)


def load_for_export(name_or_path: str | Path, architecture: str | None = None) -> AlbertPreTrainedModel:
    directory = resolve_model_dir(name_or_path)
    config = AlbertConfig.from_json_file(directory / CONFIG_NAME)
    arch = architecture or (config.extra.get("architectures") or ["AlbertModel"])[0]
    if arch not in MODEL_CLASSES:
        raise ExportError(f"unknown architecture {arch!r}; one of {', '.join(MODEL_CLASSES)}")
    return MODEL_CLASSES[arch].from_pretrained(directory).eval()


def export_onnx(model: AlbertPreTrainedModel, out: str | Path, opset: int = 18, quantize: str | None = None) -> dict:
    """Write `out` (.onnx, weights inside when under 2 GB) and return {path, bytes, outputs}."""
    arch = type(model).__name__
    names = OUTPUTS[arch]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    choice = arch == "AlbertForMultipleChoice"
    shape = (2, 2, 8) if choice else (2, 8)
    example = (torch.randint(5, model.config.vocab_size, shape), torch.ones(shape, dtype=torch.long),
               torch.zeros(shape, dtype=torch.long))
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence", max=model.config.max_position_embeddings)
    dims: dict[int, Any] = {0: batch, 2: seq} if choice else {0: batch, 1: seq}
    if choice:
        dims[1] = torch.export.Dim("choices")
    wrapped = _Outputs(model.float().eval(), names).eval()
    with torch.no_grad():
        program = torch.onnx.export(wrapped, example, dynamo=True, opset_version=opset, input_names=list(INPUTS),
                                    output_names=list(names), dynamic_shapes={k: dims for k in INPUTS},
                                    external_data=False, verbose=False)
    if program is None:
        raise ExportError("the ONNX exporter returned nothing")
    tmp = out.with_suffix(".tmp.onnx")
    program.save(str(tmp))
    if quantize == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(tmp), str(out), weight_type=QuantType.QInt8)
        tmp.unlink()
    elif quantize is None:
        os.replace(tmp, out)
    else:
        raise ExportError(f"unknown quantization {quantize!r} (int8)")
    return {"path": str(out), "bytes": out.stat().st_size, "outputs": list(names)}
