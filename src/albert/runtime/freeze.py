"""The encoder's matrices made ready for inference, once, from outside the model (the model code stays pure): fp32
and bf16 packed for oneDNN with their epilogues fused, int8 quantized per channel; the heads kept in fp32."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from albert.errors import InputError
from albert.modeling.backbone import AlbertTransformer, LayerWeights
from albert.runtime.kernels import (
    ONEDNN_ACTIVATIONS,
    DynamicInt8Linear,
    Int8Linear,
    _dynamic_int8,
    _int8,
    _onednn,
    cpu_packs_bf16,
    onednn_available,
    onednn_int8_available,
)

if TYPE_CHECKING:
    from albert.modeling.pretrained import AlbertPreTrainedModel


def _encoders(model: nn.Module) -> list[AlbertTransformer]:
    return [m for m in model.modules() if isinstance(m, AlbertTransformer)]


def _fp32_heads(model: AlbertPreTrainedModel) -> None:
    # a list of heads (early exit's classifiers per pass) is never called itself: each of its heads is
    heads = [h for m in model.head_modules() for h in (m if isinstance(m, nn.ModuleList) else [m])]
    for head in heads:
        if not getattr(head, "_albert_fp32_hook", False):
            head.register_forward_pre_hook(lambda _m, args: tuple(a.float() if torch.is_tensor(a) else a
                                                                  for a in args))
            head._albert_fp32_hook = True  # type: ignore[assignment]


# a matrix and its bias → a prepared matrix (albert.modeling.backbone.LayerWeights); with an activation (a post-op of
# ONEDNN_ACTIVATIONS) the prepared matrix applies it too
Pack = Callable[..., Any]


def _prepare_encoders(model: AlbertPreTrainedModel, dtype: torch.dtype, pack: Pack | None = None,
                      fuses_activation: bool = False) -> None:
    """Every encoder's shared-layer weights prepared once in `dtype` (Q/K/V concatenated, cast) instead of at every
    forward; `pack`: its four matrices replaced by prepared ones, the FFN's with its activation where
    `fuses_activation` and oneDNN knows the config's activation."""
    with torch.no_grad():
        for enc in _encoders(model):
            act = ONEDNN_ACTIVATIONS.get(enc.config.hidden_act) if fuses_activation else None
            enc.prepared_weights = [[_packed(layer.prepare(dtype), pack, act)  # type: ignore[operator]
                           for layer in group.albert_layers]  # type: ignore[union-attr]
                          for group in enc.albert_layer_groups]
            enc.inference_dtype = dtype


def _packed(w: LayerWeights, pack: Pack | None, act: tuple[str, str] | None) -> LayerWeights:
    if pack is None:
        return w
    ffn = pack(w.ffn_w, w.ffn_b) if act is None else pack(w.ffn_w, w.ffn_b, act)
    return LayerWeights(pack(w.qkv_w, w.qkv_b), None, pack(w.out_w, w.out_b), None, w.ln1_w, w.ln1_b,
                        ffn, None, pack(w.ffn_out_w, w.ffn_out_b), None, w.ln2_w, w.ln2_b,
                        ffn_activated=act is not None)


def _freeze(model: AlbertPreTrainedModel, dtype: torch.dtype, packed: bool) -> AlbertPreTrainedModel:
    """The encoder in `dtype`; `packed`: its matrices in oneDNN's layout (PackedLinear), on the CPU."""
    model.float().eval()
    packed = packed and onednn_available() and next(model.parameters()).device.type == "cpu"
    _prepare_encoders(model, dtype, _onednn if packed else None, fuses_activation=True)
    return model


def freeze_fp32(model: AlbertPreTrainedModel, packed: bool = True) -> AlbertPreTrainedModel:
    """Encoder weights prepared once (Q/K/V concatenated) instead of at every forward; on the CPU packed for
    oneDNN with the FFN's activation fused (`packed=False`: plain tensors, for torch.compile to fold itself)."""
    return _freeze(model, torch.float32, packed)


def freeze_bf16(model: AlbertPreTrainedModel, packed: bool = True) -> AlbertPreTrainedModel:
    """Encoder in bf16 (weights cast once, here; on the CPU packed for oneDNN as in fp32 where oneDNN can pack bf16),
    parameters and heads in fp32."""
    _freeze(model, torch.bfloat16, packed and cpu_packs_bf16())
    _fp32_heads(model)
    return model


def quantize_int8(model: AlbertPreTrainedModel) -> AlbertPreTrainedModel:
    """Encoder matrices in int8 (activations quantized per batch), everything else in fp32: oneDNN's int8 kernels
    with the FFN's activation fused (Int8Linear) where torch has them, else torch's dynamic int8 matrices.

    Why oneDNN rather than fbgemm (torch's other x86 int8 engine): it kept more of fp32's top answers, only it fuses
    the activation, and without VNNI neither is faster at every size (docs/kernel-notes.md)."""
    if next(model.parameters()).device.type != "cpu":
        raise InputError("int8 dynamic quantization runs on the CPU only")
    model.float().eval()
    if onednn_int8_available():
        _prepare_encoders(model, torch.float32, _int8, fuses_activation=True)
    else:
        _prepare_encoders(model, torch.float32, _dynamic_int8)
    return model


def is_int8(model: nn.Module) -> bool:
    """Whether the model's encoder runs on int8 matrices (quantize_int8 was applied)."""
    return any(isinstance(w.qkv_w, (Int8Linear, DynamicInt8Linear)) for enc in _encoders(model)
               for row in (enc.prepared_weights or []) for w in row)
