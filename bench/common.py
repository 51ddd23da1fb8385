"""Helpers the benchmarks share."""

from __future__ import annotations

import resource
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from albert.runtime.kernels import _dynamic_int8, _int8, _onednn, onednn_available, onednn_int8_available


def peak_rss_mb() -> int:
    """This process's peak resident memory. VmHWM starts afresh at exec; ru_maxrss does not (Linux keeps the
    larger of the parent's at fork and the child's own), so a child started by a big parent would report the
    parent's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def transformers_config(config: Any) -> Any:
    """transformers' config equal to ours (an albert.AlbertConfig), with SDPA attention, as every transformers
    contender in these benchmarks runs."""
    import transformers

    hf_config = transformers.AlbertConfig(**config.to_dict())
    hf_config._attn_implementation = "sdpa"
    return hf_config


def model_gflop(config: Any, B: int, T: int) -> float:
    """Forward GFLOP of the encoder for B×T tokens (albert.modeling.config.forward_flops, without an MLM head)."""
    from albert.modeling.config import forward_flops

    return forward_flops(config, B, T) / 1e9


def gemm_rates(H: int, inner: int, tokens: int, repeats: int, bf16: bool = False) -> dict[str, float]:
    """This CPU's GFLOP/s on the model's largest matmul, (tokens × H) @ (H × inner), in fp32 (torch's default
    matmul and oneDNN on a packed matrix; `gemm_fp32_gflops` is the faster), in dynamic int8 (activations quantized
    per call: torch's quantized linear, as transformers' int8 runs, and oneDNN's int8 kernel, as ours runs;
    `gemm_int8_gflops` is the faster) and, with `bf16`, in bf16; medians."""
    x, w = torch.randn(tokens, H), torch.randn(inner, H)
    flops = 2 * tokens * H * inner
    dynamic = _dynamic_int8(w, None)
    xb, wb = x.bfloat16(), w.bfloat16()
    kernels = [("fp32_default", lambda: torch.nn.functional.linear(x, w)),
               ("int8_dynamic", lambda: dynamic(x))]
    if onednn_available():  # oneDNN on a matrix packed once, the kernel our fp32 inference runs
        onednn = _onednn(w, None)
        kernels.append(("fp32_onednn", lambda: onednn(x)))
    if onednn_int8_available():  # and the one our int8 inference runs
        int8 = _int8(w, None)
        kernels.append(("int8_onednn", lambda: int8(x)))
    if bf16:
        kernels.append(("bf16", lambda: torch.nn.functional.linear(xb, wb)))
    out = {}
    for name, fn in kernels:
        fn()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        out[f"gemm_{name}_gflops"] = round(flops / statistics.median(times) / 1e9, 1)
    for dtype in ("fp32", "int8"):  # the CPU's rate: the faster of its kernels
        out[f"gemm_{dtype}_gflops"] = max(v for k, v in out.items() if k.startswith(f"gemm_{dtype}_"))
    return out


def forward_speeds(models: dict[str, Any], shape: str, rounds: int,
                   precisions: tuple[str, ...] = ("fp32", "int8")) -> dict[str, dict[str, float]]:
    """Tokens/s of each model's forward at `shape` (BxT, random ids), prepared for inference in each precision
    (copies; the models are left as they are): the contenders alternate within each round; medians."""
    import copy

    from albert.runtime.policy import Runtime, prepare_for_inference

    B, T = map(int, shape.split("x"))
    vocab = min(m.config.vocab_size for m in models.values())
    ids = torch.randint(5, vocab, (B, T), generator=torch.Generator().manual_seed(0))
    speeds: dict[str, dict[str, float]] = {n: {} for n in models}
    for precision in precisions:
        prepared = {n: prepare_for_inference(copy.deepcopy(m), Runtime(torch.device("cpu"), precision))
                    for n, m in models.items()}
        times: dict[str, list[float]] = {n: [] for n in prepared}
        with torch.inference_mode():
            for m in prepared.values():
                m(input_ids=ids)  # warm-up
            for _ in range(rounds):
                for n, m in prepared.items():
                    start = time.perf_counter()
                    m(input_ids=ids)
                    times[n].append(time.perf_counter() - start)
        for n in prepared:
            speeds[n][f"{precision}_tokens_per_s"] = round(B * T / statistics.median(times[n]), 1)
    return speeds
