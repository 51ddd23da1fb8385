"""The prepared matrices the runtime chooses between, and what the CPU can do.

A prepared matrix is a callable `linear(x, residual=None)` that `albert.modeling.backbone.LayerWeights` holds in
place of a
plain weight and bias (the model stays pure torch): `PackedLinear` (fp32 or bf16, reordered once into oneDNN's
blocked layout, the activation or the residual add fused into its kernel), `Int8Linear` (int8 through oneDNN's
kernel on activations quantized per call, 8-bit with VNNI and 7-bit without) and `DynamicInt8Linear` (torch's
dynamic int8, where torch lacks oneDNN's kernels). Measurements behind these choices: docs/benchmarks.md.
"""

from __future__ import annotations

import functools
import math
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from albert.errors import CheckpointError
from albert.modeling.backbone import activation_fn

NON_FINITE = "computed non-finite values (NaN or infinity): its weights are broken, or too large for this precision"

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


def cpu_packs_bf16() -> bool:
    """Whether oneDNN can lay bf16 matrices out in its blocked format here: it needs AVX512 (BW, VL, DQ) or
    AVX-NE-CONVERT (it raises elsewhere); without them bf16 matrices stay plain tensors."""
    flags = _flags()
    return {"avx512bw", "avx512vl", "avx512dq"} <= flags or "avx_ne_convert" in flags or "amx_bf16" in flags


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


def _finite(t: Tensor) -> bool:
    """Whether every value is finite, in one pass: the least and the greatest are NaN if any value is, and ±inf
    if any is. Why not torch.isfinite(t).all(): it makes several passes and a mask, a sizeable share of a small
    forward (docs/kernel-notes.md)."""
    if t.numel() == 0:
        return True
    lo, hi = torch.aminmax(t)
    return math.isfinite(lo.item()) and math.isfinite(hi.item())


# the activations oneDNN applies inside a matmul's kernel (post-op name, algorithm), by the config's hidden_act;
# each equals torch's own within fp32 rounding (tests/test_runtime.py)
ONEDNN_ACTIVATIONS: dict[str, tuple[str, str]] = {
    "gelu": ("gelu", "none"), "gelu_new": ("gelu", "tanh"), "gelu_pytorch_tanh": ("gelu", "tanh"),
    "relu": ("relu", ""), "silu": ("swish", ""), "swish": ("swish", ""), "tanh": ("tanh", ""),
}


def onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


@dataclass(frozen=True)
class PackedLinear:
    """An fp32 (or bf16) matrix reordered once into oneDNN's blocked layout, with its bias and, fused into the
    same kernel, the activation after it or the residual added to it.

    Why: oneDNN's packed GEMM runs the model's shapes faster than torch's default (MKL) path, and the FFN's
    tanh-GELU, a separate pass over the largest activation in eager torch, costs nothing inside the kernel
    (docs/kernel-notes.md)."""

    weight: Tensor
    bias: Tensor | None
    activation: tuple[str, str] = ("none", "")

    def __call__(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        if residual is not None:
            return torch.ops.mkldnn._linear_pointwise.binary(x, residual, self.weight, self.bias, "add")
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, self.activation[0], [], self.activation[1])


def _onednn(weight: Tensor, bias: Tensor | None, activation: tuple[str, str] | None = None) -> PackedLinear:
    packed = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), None)
    return PackedLinear(packed, bias, activation or ("none", ""))


def onednn_int8_available() -> bool:
    return "onednn" in torch.backends.quantized.supported_engines and hasattr(torch.ops.onednn, "qlinear_pointwise")


# calls of at most this many rows take fbgemm's kernel on CPUs without VNNI (Int8Linear.few_rows)
FEW_ROWS = 32
# oneDNN's post-ops (ONEDNN_ACTIVATIONS' values) as the model's own torch functions, for a kernel that cannot fuse them
_TORCH_ACTIVATIONS: dict[tuple[str, str], Callable[[Tensor], Tensor]] = {
    post_op: activation_fn(name) for name, post_op in ONEDNN_ACTIVATIONS.items()}


@dataclass(frozen=True)
class Int8Linear:
    """An int8 matrix (symmetric per output channel, packed once for oneDNN) applied to fp32 activations quantized
    here per batch (asymmetric, zero exact), with its bias and, in the same kernel, the activation after it or the
    residual added to it; fp32 out.

    Why not torch's quantized.linear_dynamic, which quantizes inside: it cannot fuse the FFN's tanh-GELU (a separate
    pass over the largest activation), and one kernel for all four matrices is simpler than mixing two that are
    within noise of each other per matrix.
    On CPUs without VNNI the int8 kernels multiply-add u8 × s8 pairs into int16, which saturates with 8-bit
    activations; 7-bit activations (127 levels) avoid it, and keep more of fp32's answers there; with VNNI the full
    255 levels are kept (docs/kernel-notes.md)."""

    weight: Tensor  # oneDNN-packed int8
    scales: Tensor
    zero_points: Tensor
    bias: Tensor | None
    activation: tuple[str, str]  # ("none", "") or a post-op of ONEDNN_ACTIVATIONS
    levels: int  # 255, or 127 without VNNI
    # without VNNI: the same matrix for fbgemm (torch's linear_dynamic), which runs a call of a few rows (a short
    # query) about twice as fast as oneDNN's int8 kernel there, whose fused activation pays off only on more rows
    few_rows: DynamicInt8Linear | None = None

    def __call__(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        if x.numel() == 0:  # no rows: nothing to quantize (aminmax refuses) and nothing to multiply
            return x.new_empty(*x.shape[:-1], self.scales.numel())
        compiling = torch.compiler.is_compiling()
        if self.few_rows is not None and not compiling and x.numel() <= FEW_ROWS * x.shape[-1]:
            y = self.few_rows(x, residual)
            return y if self.activation[0] == "none" else _TORCH_ACTIVATIONS[self.activation](y)
        q, scale, zero = self._quantize_in_graph(x) if compiling else self._quantize(x)
        op = torch.ops.onednn.qlinear_pointwise
        if residual is not None:
            return (op.binary_tensor if compiling else op.binary)(
                # oneDNN reads the residual as dense rows: a strided one gave garbage, not an error
                q, scale, zero, self.weight, self.scales, self.zero_points, residual.contiguous(), self.bias, 1.0, 0,
                torch.float32, 1.0, 0, "add", 1.0, "none", [], "")
        return (op.tensor if compiling else op.default)(q, scale, zero, self.weight, self.scales, self.zero_points,
                                                        self.bias, 1.0, 0, torch.float32, self.activation[0], [],
                                                        self.activation[1])

    def _quantize(self, x: Tensor) -> tuple[Tensor, float, int]:
        """x as uint8 with its scale and zero point, as Python numbers."""
        lo, hi = (float(v) for v in torch.aminmax(x))
        if not math.isfinite(hi - lo):
            raise CheckpointError(f"the int8 encoder {NON_FINITE}")
        lo, hi = min(lo, 0.0), max(hi, 0.0)  # zero stays exact (padding, ReLU)
        scale = (hi - lo) / self.levels or 1.0
        zero = min(self.levels, max(0, round(-lo / scale)))
        return _uint8(torch.quantize_per_tensor(x, scale, zero, torch.quint8)), scale, zero

    def _quantize_in_graph(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The same quantization in tensors, for torch.compile: Python numbers would break the graph at every matrix,
        and as tensors inductor fuses the range, the rounding and the LayerNorm before them into one pass. The input
        is scaled by the reciprocal, as torch's quantizer does. No error can be raised inside a graph: a NaN or
        infinite input makes the scale, and with it every output, NaN or infinite, which the model's finite check
        (prepare_for_inference) then refuses."""
        lo, hi = torch.aminmax(x)
        lo, hi = lo.clamp(max=0.0), hi.clamp(min=0.0)
        scale = (hi - lo) / self.levels
        scale = torch.where(scale == 0, 1.0, scale)
        zero = torch.clamp(torch.round(-lo / scale), 0, self.levels)
        q = torch.clamp(torch.round(x * (1.0 / scale)) + zero, 0, 255).to(torch.uint8)
        return q, scale, zero.to(torch.int32)


def _uint8(q: Tensor) -> Tensor:
    """A quint8 tensor's bytes as a uint8 tensor on the same storage. Why: int_repr() copies them in one thread (for
    a 128×3072 input, five times the cost of the quantization itself), and q.view(torch.uint8) does not keep the
    storage alive (a use after free)."""
    return torch.empty(0, dtype=torch.uint8).set_(q.untyped_storage(), q.storage_offset(), q.shape, q.stride())


@dataclass(frozen=True)
class DynamicInt8Linear:
    """torch's own dynamic int8 matrix (quantized.linear_dynamic), where torch has no oneDNN int8 kernels (builds
    for other CPUs than x86): activations quantized per batch inside torch, 7 bits without VNNI as in Int8Linear;
    the activation after it is a separate pass."""

    packed: object
    reduce_range: bool
    out_features: int

    def __call__(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        if x.numel() == 0:  # torch's kernel drops the middle dimensions of a batch of no rows
            return x.new_empty(*x.shape[:-1], self.out_features)
        try:
            y = torch.ops.quantized.linear_dynamic(x, self.packed, self.reduce_range)
        except RuntimeError:  # torch's quantizer refuses NaN ("min should be less than or equal to max")
            if not _finite(x):
                raise CheckpointError(f"the int8 encoder {NON_FINITE}") from None
            raise
        return y if residual is None else y.add_(residual)


def _quantize_weight(weight: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric int8 per output channel: the quantized matrix and its scales."""
    w = weight.detach().float()
    scales = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0
    return torch.quantize_per_channel(w, scales, torch.zeros_like(scales, dtype=torch.long), 0, torch.qint8), scales


def _int8(weight: Tensor, bias: Tensor | None, activation: tuple[str, str] | None = None) -> Int8Linear:
    q, scales = _quantize_weight(weight)
    vnni = cpu_has_vnni()
    return Int8Linear(torch.ops.onednn.qlinear_prepack(q.int_repr(), None), scales,
                      torch.zeros_like(scales, dtype=torch.long), None if bias is None else bias.detach().float(),
                      activation or ("none", ""), 255 if vnni else 127,
                      None if vnni or "fbgemm" not in torch.backends.quantized.supported_engines
                      else _dynamic_int8(weight, bias))


def _dynamic_int8(weight: Tensor, bias: Tensor | None) -> DynamicInt8Linear:
    q, _ = _quantize_weight(weight)
    bias = None if bias is None else bias.detach().float()
    return DynamicInt8Linear(torch.ops.quantized.linear_prepack(q, bias), not cpu_has_vnni(), weight.shape[0])
