"""Where and in what precision a model runs: one policy for training, evaluation, pipelines, the server
and export.

- Devices as users write them ("auto", "cpu", "cuda", "cuda:1") → torch devices, checked here.
- Precisions: "auto" resolves by the hardware (bf16 on GPUs and on CPUs with bf16 matrix units, fp32
  elsewhere); "int8" is dynamic quantization of the encoder's matrices, for inference on the CPU.
- `prepare_for_inference` applies a precision to a model from outside it (the model code stays pure):
  bf16 casts the shared layer's prepared weights once, int8 quantizes and packs them once; parameters and
  task heads stay fp32 (the heads are cheap, and fp32 there keeps near-tied top predictions from flipping).
  Training is not possible afterwards; reload the model for that.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from albert.errors import CheckpointError, ConfigError, InputError
from albert.model import AlbertTransformer, LayerWeights

if TYPE_CHECKING:
    from albert.heads import AlbertPreTrainedModel

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp32", "int8")


# ----- devices -----
def resolve_device(name: str, index: int | None = None) -> torch.device:
    """auto: the GPU where there is one, else the CPU; `index`: the GPU of this process (torchrun's local rank)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r} (auto, cpu, cuda or cuda:N)") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {name!r} is not supported (auto, cpu, cuda or cuda:N)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name} requested but no CUDA device is available")
        if index is not None and device.index is None:
            device = torch.device("cuda", index)
        if (device.index or 0) >= torch.cuda.device_count():
            raise ConfigError(f"device {device} does not exist ({torch.cuda.device_count()} CUDA device(s))")
    return device


# ----- what the CPU can do -----
@functools.cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _flags() -> set[str]:
    line = next((x for x in _cpuinfo().splitlines() if x.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def cpu_has_bf16() -> bool:
    """AMX or AVX512-BF16: bf16 matrix work is then several times faster than fp32 on this CPU."""
    return bool(_flags() & {"amx_bf16", "avx512_bf16"})


def cpu_has_vnni() -> bool:
    """int8 multiply-accumulate into int32 (AVX512-VNNI, AVX-VNNI or AMX-INT8)."""
    return bool(_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_description() -> str:
    """The CPU's model name and its bf16 and int8 units, recorded with every benchmark: AMX makes bf16 ~4-6x fp32
    matmuls, AVX512-BF16 alone ~2.5x, so ratios from different machines must not be compared."""
    name = next((line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines() if line.startswith("model name")),
                platform.processor() or platform.machine())
    flags = _flags()
    units = "AMX" if "amx_bf16" in flags else "AVX512-BF16, no AMX" if "avx512_bf16" in flags else "no bf16 units"
    vnni = "VNNI" if cpu_has_vnni() else "no VNNI"
    return f"{name} ({units}, {vnni}), {os.cpu_count()} cores"


# ----- precision -----
def resolve_precision(precision: str, device: torch.device) -> Precision:
    """'auto' → bf16 on GPUs and on CPUs with bf16 matrix units, fp32 elsewhere. bf16 asked for on a CPU
    without them still runs, but its matmuls may take a reference path far slower than fp32 (0.9 against
    72 GFLOP/s measured on an AVX2-only EPYC), so that gets a warning. int8 runs on the CPU only."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r} ({', '.join(PRECISIONS)})")
    if precision == "auto":
        return "bf16" if device.type == "cuda" or cpu_has_bf16() else "fp32"
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        logger.warning("bf16 on a CPU without bf16 matrix units (AMX or AVX512-BF16) can be much slower than fp32; "
                       "use precision fp32 or auto here")
    if precision == "int8" and device.type != "cpu":
        raise ConfigError("int8 dynamic quantization runs on the CPU only (use bf16 on a GPU)")
    return precision  # type: ignore[return-value]


@dataclass(frozen=True)
class Runtime:
    """A device and a resolved precision."""

    device: torch.device
    precision: Precision

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The dtype to autocast to while training in this precision (None: no autocast)."""
        return torch.bfloat16 if self.precision == "bf16" else None


def resolve_runtime(device: str = "auto", precision: str = "auto") -> Runtime:
    dev = resolve_device(device)
    return Runtime(dev, resolve_precision(precision, dev))


def prepare_for_inference(model: AlbertPreTrainedModel, runtime: Runtime) -> AlbertPreTrainedModel:
    """The model on the runtime's device, in eval mode, with its encoder in the runtime's precision; its outputs
    are checked to be finite (broken weights give an error, never NaN in an answer)."""
    model.to(device=runtime.device)
    if runtime.precision == "bf16":
        freeze_bf16(model)
    elif runtime.precision == "int8":
        quantize_int8(model)
    else:
        freeze_fp32(model)
    if not getattr(model, "_albert_finite_hook", False):
        model.register_forward_hook(_check_finite)
        model._albert_finite_hook = True  # type: ignore[assignment]
    return model


def _check_finite(module: nn.Module, _args: object, output: object) -> None:
    values = output.values() if isinstance(output, dict) else vars(output).values() if hasattr(output, "__dict__") \
        else [output]
    for value in values:
        if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{type(module).__name__} computed non-finite values (NaN or infinity): its "
                                  "weights are broken, or too large for this precision")


# ----- bf16 and int8 encoders -----
HEAD_MODULES = ("predictions", "sop_classifier", "classifier", "qa_outputs")


def _encoders(model: nn.Module) -> list[AlbertTransformer]:
    return [m for m in model.modules() if isinstance(m, AlbertTransformer)]


def _fp32_heads(model: nn.Module) -> None:
    for name in HEAD_MODULES:
        head = getattr(model, name, None)
        if head is not None and not getattr(head, "_albert_fp32_hook", False):
            head.register_forward_pre_hook(lambda _m, args: tuple(a.float() if torch.is_tensor(a) else a
                                                                  for a in args))
            head._albert_fp32_hook = True


def _freeze(model: AlbertPreTrainedModel, dtype: torch.dtype) -> AlbertPreTrainedModel:
    """The encoder's weights prepared once in `dtype` (Q/K/V concatenated, cast), instead of at every forward."""
    model.float().eval()
    with torch.no_grad():
        for enc in _encoders(model):
            enc.frozen = [[layer.prepare(dtype) for layer in group.albert_layers]  # type: ignore[union-attr]
                          for group in enc.albert_layer_groups]
            enc.inference_dtype = dtype
    return model


def freeze_fp32(model: AlbertPreTrainedModel) -> AlbertPreTrainedModel:
    """Encoder weights prepared once (Q/K/V concatenated) instead of at every forward."""
    return _freeze(model, torch.float32)


def freeze_bf16(model: AlbertPreTrainedModel) -> AlbertPreTrainedModel:
    """Encoder in bf16 (weights cast once, here), parameters and heads in fp32."""
    _freeze(model, torch.bfloat16)
    _fp32_heads(model)
    return model


@dataclass(frozen=True)
class Int8Linear:
    """A prepacked int8 matrix (per output channel) applied to fp32 activations quantized per batch.

    On CPUs without VNNI the int8 kernels multiply-add u8 × s8 pairs into int16, which saturates with
    8-bit activations; 7-bit activations (reduce_range) avoid it. On an AVX2-only EPYC that took top-1
    fill-mask agreement with fp32 from 98.7% to 99.3% (300 masks); with VNNI the full range is kept."""

    packed: object
    reduce_range: bool

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(x, self.packed, self.reduce_range)


def _pack(weight: torch.Tensor, bias: torch.Tensor | None) -> Int8Linear:
    w = weight.detach().float()
    scales = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0
    q = torch.quantize_per_channel(w, scales, torch.zeros_like(scales, dtype=torch.long), 0, torch.qint8)
    packed = torch.ops.quantized.linear_prepack(q, None if bias is None else bias.detach().float())
    return Int8Linear(packed, reduce_range=not cpu_has_vnni())


def quantize_int8(model: AlbertPreTrainedModel) -> AlbertPreTrainedModel:
    """Encoder matrices in int8 (activations quantized per batch), everything else in fp32.

    Uses torch's oneDNN quantized engine where available (it sets the process-wide engine): on a
    near-tied test set it kept 99.3% of fp32's top-1 fill-mask answers, against 98.7% for fbgemm."""
    if next(model.parameters()).device.type != "cpu":
        raise InputError("int8 dynamic quantization runs on the CPU only")
    if "onednn" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "onednn"
    model.float().eval()
    with torch.no_grad():
        for enc in _encoders(model):
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
            enc.inference_dtype = torch.float32
    return model


def is_int8(model: nn.Module) -> bool:
    """Whether the model's encoder runs on int8 matrices (quantize_int8 was applied)."""
    return any(isinstance(w.qkv_w, Int8Linear) for enc in _encoders(model) for row in (enc.frozen or [])
               for w in row)
