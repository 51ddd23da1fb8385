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

import contextlib
import functools
import logging
import platform
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from albert.errors import CheckpointError, ConfigError, InputError
from albert.modeling.backbone import AlbertTransformer, LayerWeights
from albert.runtime.kernels import (
    NON_FINITE,
    ONEDNN_ACTIVATIONS,
    DynamicInt8Linear,
    Int8Linear,
    _dynamic_int8,
    _finite,
    _int8,
    _onednn,
    cpu_has_bf16,
    onednn_available,
    onednn_int8_available,
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
    forward then runs under torch.compile (_compile), and fp32 and bf16 weights stay plain tensors, which inductor
    folds and packs itself (it cannot trace oneDNN's packed ones)."""
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
    return _compile(model, runtime) if compile else model


# inductor's settings for a compiled model, in force around each of its calls (_compile)
INDUCTOR_SETTINGS: dict[str, object] = {"freezing": True}
INDUCTOR_CPU_SETTINGS: dict[str, object] = {"cpp_wrapper": True, "realize_cpu_opcount_threshold": 2}


def _compile(model: AlbertPreTrainedModel, runtime: Runtime) -> AlbertPreTrainedModel:
    """`model.forward` under torch.compile (inductor), for prepare_for_inference: int8, or fp32/bf16 with plain
    matrices. The first call compiles (20-50 s for albert-base on 2 cores); shapes are dynamic, so other lengths and
    batch sizes reuse it, except that a size of 1 (one row, one [MASK]) compiles apart from larger ones
    (Pipeline.warm_up, which `albert serve --compile` runs at start).

    - freezing: the weights are constants, which inductor folds and prepacks for oneDNN.
    - cpp_wrapper, on the CPU: generated C++ calls the graph's kernels, not Python, whose per-call cost otherwise
      weighs most at small batches.
    - realize_cpu_opcount_threshold, on the CPU: an expression with more than 2 ops that several others read is
      computed once and stored, not recomputed inside each reader. Why: an int8 matrix's input is quantized with a
      scale and zero point computed from its range in a few scalar ops (Int8Linear._quantize_in_graph), and by
      default inductor recomputed them, three divisions deep, for every 16 values of the quantizing loop. A torch
      without one of these settings compiles without it.
    - The settings are patched around every call instead of passed as torch.compile(options=...), which did not
      freeze (the int8 weights stayed graph inputs, which inductor refused). Compilation happens lazily, at a call,
      so the patch is in force when it does.
    What each setting gained: docs/kernel-notes.md.
    The model's forward hooks (the check that outputs are finite) run outside the compiled code."""
    import torch._dynamo.config as dynamo_config
    import torch._inductor.config as inductor_config

    wanted = {**INDUCTOR_SETTINGS, **(INDUCTOR_CPU_SETTINGS if runtime.device.type == "cpu" else {})}
    settings = {k: v for k, v in wanted.items() if hasattr(inductor_config, k)}  # older torch: fewer settings

    def patched(fn: Callable[..., Any], graphs: int | None = None) -> Callable[..., Any]:
        """`fn` compiled, called under the settings; `graphs`: Dynamo's limit of graphs for fn's code, where
        torch's default (8) is too few."""
        compiled = torch.compile(fn, dynamic=True)

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            limit = dynamo_config.patch(recompile_limit=graphs) if graphs else contextlib.nullcontext()
            with inductor_config.patch(settings), limit:
                return compiled(*args, **kwargs)
        return call

    eager, whole = model.forward, patched(model.forward)
    if getattr(model.config, "early_exit", None) and hasattr(model, "exit_step"):
        # early exit's loop decides after every pass, in Python: its steps are compiled on their own
        model.compiled_steps = _ExitSteps(model, patched)  # type: ignore[assignment]

    @functools.wraps(eager)
    def forward(*args: Any, **kwargs: Any) -> Any:
        policy = kwargs.get("exit_policy")
        return eager(*args, **kwargs) if policy is not None and policy.active else whole(*args, **kwargs)

    model.forward = forward  # type: ignore[method-assign]
    return model


class _ExitStep(nn.Module):
    """Early exit's step (EarlyExitHead.exit_step on the prepared weights) from `first_pass`, one pass per
    classifier: (x, mask, classifiers' (weight, bias)) → (x, logits)."""

    def __init__(self, head: nn.Module, first_pass: int) -> None:
        super().__init__()
        self.head, self.first_pass = head, first_pass

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, classifiers: list[tuple[torch.Tensor, torch.Tensor]]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        head: Any = self.head
        return head.exit_step(self.first_pass, x, mask, head.albert.encoder.layer_weights(x.dtype), classifiers)


class _ExitSteps:
    """The compiled steps of early exit's loop, made on first use: one graph per layer group for a single pass
    (every pass of a group runs the same weights), and one per run of several passes (the loop's first step: the
    passes before any row can stop).

    Dynamo keeps the graphs of one function together, and `_ExitStep.forward` is one function for every step: each
    step is a graph, twice over (with and without a padding mask) and again for a batch of one row (a size of 1
    compiles apart). Past torch's default limit of 8 it would run the rest eagerly, unannounced but for a warning,
    so the limit is raised to what a model can use."""

    def __init__(self, head: nn.Module, compile: Callable[..., Callable[..., Any]]) -> None:
        self.head, self.compile = head, compile
        self.steps: dict[tuple[int, int], Callable[..., Any]] = {}
        cfg: Any = head.config
        self.graphs = 4 * (cfg.num_hidden_layers + cfg.num_hidden_groups)
        self.per_group = cfg.num_hidden_layers // cfg.num_hidden_groups

    def __call__(self, first_pass: int, passes: int) -> Callable[..., Any]:
        if passes == 1:  # a single pass: its group's graph (keyed by the group's first pass)
            first_pass -= first_pass % self.per_group
        key = (first_pass, passes)
        if key not in self.steps:
            self.steps[key] = self.compile(_ExitStep(self.head, first_pass), self.graphs)
        return self.steps[key]


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


# ----- bf16, fp32 and int8 encoders -----
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
    """Encoder in bf16 (weights cast once, here; on the CPU packed for oneDNN as in fp32), parameters and heads in
    fp32."""
    _freeze(model, torch.bfloat16, packed)
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
