"""Where and in what precision a model runs: one policy for training, evaluation, pipelines, the server
and export.

- Devices as users write them ("auto", "cpu", "cuda", "cuda:1") → torch devices, checked here.
- Precisions: "auto" resolves by the hardware (bf16 on GPUs and on CPUs with bf16 matrix units, fp32
  elsewhere); "int8" is dynamic quantization of the encoder's matrices, for inference on the CPU.
- `prepare_for_inference` applies a precision to a model from outside it (the model code stays pure):
  bf16 casts the shared layer's prepared weights once, int8 quantizes and packs them once, and on the CPU
  fp32 and bf16 matrices are packed once for oneDNN with the activation and residual adds fused into their
  kernels (PackedLinear); parameters and task heads stay fp32 (the heads are cheap, and fp32 there keeps
  near-tied top predictions from flipping).
  Training is not possible afterwards; reload the model for that.
- With `compile` (`--compile`) the prepared model's forward runs under torch.compile: int8 quantizes inside the
  graph, where inductor fuses it with the LayerNorm before it.
"""

from __future__ import annotations

import functools
import logging
import platform
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from albert.errors import CheckpointError, ConfigError
from albert.runtime.compiled import compile_model
from albert.runtime.freeze import freeze_bf16, freeze_fp32, quantize_int8
from albert.runtime.kernels import (
    NON_FINITE,
    _finite,
    cpu_has_bf16,
)

if TYPE_CHECKING:
    from albert.modeling.pretrained import AlbertPreTrainedModel

logger = logging.getLogger(__name__)

# The int8 path quantizes through torch's quantized tensors, which torch 2.13 deprecates (pytorch#184982) with a
# warning on first use: it is for whoever maintains this file (who must move to torch's successor API before it
# drops them), not for a user running `--precision int8`
warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other "
                        r"quantized tensor creation functions", category=UserWarning)

# inductor's own int8 lowering (under --compile) copies a tensor with torch.tensor(t) and torch warns about it on
# every compile: nothing the user did, nothing they can change
warnings.filterwarnings("ignore", message=r"To copy construct from a tensor", category=UserWarning,
                        module=r"torch\._inductor\.")

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


# ----- precision -----
def resolve_precision(precision: str, device: torch.device) -> Precision:
    """'auto' → bf16 on GPUs and on CPUs with bf16 matrix units, fp32 elsewhere. bf16 asked for on a CPU
    without them still runs, but its matmuls may take a reference path far slower than fp32 (docs/kernel-notes.md),
    so that gets a warning. int8 runs on the CPU only."""
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


def prepare_for_inference(model: AlbertPreTrainedModel, runtime: Runtime, compile: bool = False
                          ) -> AlbertPreTrainedModel:
    """The model on the runtime's device, in eval mode, with its encoder in the runtime's precision; its outputs
    are checked to be finite (broken weights give an error, never NaN in an answer). `compile` (`--compile`): its
    forward then runs under torch.compile (albert.runtime.compiled), and fp32 and bf16 weights stay plain tensors,
    which inductor folds and packs itself (it cannot trace oneDNN's packed ones)."""
    packed = not compile
    model.to(device=runtime.device)
    if runtime.device.type == "cpu":
        keep_freed_memory()
    if runtime.precision == "bf16":
        freeze_bf16(model, packed)
    elif runtime.precision == "int8":
        quantize_int8(model)
    else:
        freeze_fp32(model, packed)
    if not getattr(model, "_albert_finite_hook", False):
        model.register_forward_hook(_check_finite)
        model._albert_finite_hook = True  # type: ignore[assignment]
    return compile_model(model, runtime.device) if compile else model


def _check_finite(module: nn.Module, _args: object, output: object) -> None:
    values = output.values() if isinstance(output, dict) else vars(output).values() if hasattr(output, "__dict__") \
        else [output]
    for value in values:
        if torch.is_tensor(value) and value.is_floating_point() and not _finite(value):
            raise CheckpointError(f"{type(module).__name__} {NON_FINITE}")


@functools.cache
def keep_freed_memory() -> None:
    """Let glibc's malloc keep freed memory for reuse instead of handing it back to the kernel at once.

    Why: a forward frees and reallocates activations of several MiB each; by default glibc returns such blocks
    (mmap, or trimming the heap's top), and every new one is then faulted in page by page again (ONNX Runtime keeps
    its own arena for the same reason). Memory stays at the process's high-water mark instead. Only glibc has
    these settings; elsewhere nothing changes."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 256 << 20)  # blocks up to 256 MiB come from the heap...
    mallopt(m_trim_threshold, 1 << 30)  # ...which is trimmed only when over 1 GiB is free at its top


