"""Inference-only transformations applied from outside the model: dynamic int8 quantization.

The shared layer's matrices are quantized once (per output channel, int8) and packed for
torch.ops.quantized.linear_dynamic; activations stay fp32 and are quantized on the fly per batch.
The heads' Linear layers go through torch's quantize_dynamic. Training is not possible afterwards.
"""

from __future__ import annotations

import torch
from torch import nn

from albert.heads import AlbertPreTrainedModel
from albert.model import AlbertTransformer, LayerWeights


def _pack(weight: torch.Tensor, bias: torch.Tensor | None) -> object:
    w = weight.detach().float()
    scales = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0
    q = torch.quantize_per_channel(w, scales, torch.zeros_like(scales, dtype=torch.long), 0, torch.qint8)
    return torch.ops.quantized.linear_prepack(q, None if bias is None else bias.detach().float())


def quantize_int8(model: AlbertPreTrainedModel) -> AlbertPreTrainedModel:
    """Quantize `model` in place for CPU inference; returns it (in eval mode, fp32 elsewhere)."""
    model.float().eval()
    encoders = [m for m in model.modules() if isinstance(m, AlbertTransformer)]
    with torch.no_grad():
        for enc in encoders:
            frozen = []
            for group in enc.albert_layer_groups:
                row = []
                for layer in group.albert_layers:  # type: ignore[union-attr]
                    w = layer.prepare(torch.float32)
                    row.append(LayerWeights(
                        _pack(w.qkv_w, w.qkv_b), None, _pack(w.out_w, w.out_b), None, w.ln1_w, w.ln1_b,
                        _pack(w.ffn_w, w.ffn_b), None, _pack(w.ffn_out_w, w.ffn_out_b), None, w.ln2_w, w.ln2_b))
                frozen.append(row)
            enc.frozen = frozen
    # The heads' own Linear modules (classifier, qa_outputs, MLM transform); the encoder's are packed above,
    # and the tied MLM decoder is left in fp32 (it is the embedding matrix).
    head_linears = {name for name, m in model.named_modules() if isinstance(m, nn.Linear)
                    and not name.startswith(("albert.", "encoder.", "embeddings.", "pooler"))
                    and name != "predictions.decoder"}
    if head_linears:
        torch.ao.quantization.quantize_dynamic(model, head_linears, dtype=torch.qint8, inplace=True)
    return model
