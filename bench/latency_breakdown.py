"""Where an int8 forward (by default a batch of one, 1 × 128) spends its time: ours under `--compile` against ONNX
Runtime's fused int8 graph, each through its own profiler, rounds alternating, on the same random albert-base-v2
weights as bench/inference_speed.py.

    python bench/latency_breakdown.py [--shape 1x128] [--rounds 5] [--out bench/results/latency_breakdown.json]

Why: the two engines' int8 matrix kernels do the same work with the same CPU instructions (VNNI where there is
VNNI), so how far ours can lead at 1 × 128 is set by everything else: attention, the LayerNorms, GELU, quantizing
activations, and per-op costs. The JSON gives each engine's milliseconds per forward by kind of op, and every op.

Ours runs here without inductor's C++ wrapper (`cpp_wrapper`), whose generated C++ calls the kernels past torch's
profiler; the kernels are the same, so only the totals (profiled, both engines) differ from inference_speed.py's.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import albert
from albert.runtime.kernels import cpu_description
from common import transformers_config
from inference_speed import ROOT, SETTLE_S, fused_onnxruntime, ort_session, shape

# kinds of op, by the names each profiler gives them (a trailing * matches a prefix): the int8 matrix kernels with
# the quantization of their inputs where the engine fuses it, attention, and the passes over activations (LayerNorm,
# GELU, residual adds; in ours inductor's fused kernels, which also quantize each matrix's input)
ORT_KINDS = {
    "int8_matmul": ("DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulInteger", "DynamicQuantizeLinear"),
    "attention": ("Attention", "FusedMatMul", "MatMul", "Softmax", "Transpose", "Where"),
    "elementwise": ("SkipLayerNormalization", "LayerNormalization", "FastGelu", "BiasGelu", "Gelu", "Add"),
}
OURS_KINDS = {
    "int8_matmul": ("onednn::qlinear_pointwise",),
    "attention": ("aten::_scaled_dot_product_flash_attention_for_cpu",),
    "elementwise": ("graph_*",),
}


def _matches(name: str, names: tuple[str, ...]) -> bool:
    return any(name.startswith(n[:-1]) if n.endswith("*") else name == n for n in names)


def kinds(per_op: dict[str, float], table: dict[str, tuple[str, ...]]) -> dict[str, float]:
    """Milliseconds per forward by kind of op; `other_ops` is every op not named in `table` (per-op costs,
    embeddings, the pooler)."""
    out = {kind: sum(v for op, v in per_op.items() if _matches(op, names)) for kind, names in table.items()}
    out["other_ops"] = sum(per_op.values()) - sum(out.values())
    return {k: round(v, 2) for k, v in out.items()}


def onnxruntime_round(path: Path, feeds: dict, runs: int, prefix: str) -> dict:
    """One profiled session of ORT's fused int8 graph, default settings as in inference_speed.py."""
    session = ort_session(path, profile_prefix=prefix)
    session.run(None, feeds)  # warm-up, left out below
    for _ in range(runs):
        time.sleep(SETTLE_S)
        session.run(None, feeds)
    events = json.loads(Path(session.end_profiling()).read_text())
    starts = sorted((e["ts"], e["dur"]) for e in events if e.get("name") == "model_run")[1:]
    totals = [dur / 1000 for _, dur in starts]
    per_op: dict[str, float] = collections.defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= starts[0][0]:
            per_op[e["args"]["op_name"]] += e["dur"] / 1000 / len(totals)
    return {"total_ms": statistics.median(totals), "per_op_ms": dict(per_op)}


def ours_round(model: torch.nn.Module, inputs: tuple, runs: int) -> dict:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(runs):
            time.sleep(SETTLE_S)
            model(*inputs)
    events = prof.key_averages()
    region = next(e for e in events if e.key.startswith("Torch-Compiled Region"))
    # the compiled graph's own Python is an op too (inductor's wrapper, here without the C++ one)
    per_op = {e.key: e.self_cpu_time_total / 1000 / runs for e in events
              if e.self_cpu_time_total > 0 and e.key != region.key}
    return {"total_ms": region.cpu_time_total / 1000 / runs, "per_op_ms": per_op}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", type=shape, default=(1, 128), metavar="BxT")
    ap.add_argument("--rounds", type=int, default=5, help="profiled rounds per engine, alternating")
    ap.add_argument("--runs", type=int, default=10, help="forwards per round")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "latency_breakdown.json"))
    a = ap.parse_args()
    import torch._inductor.config as inductor_config
    import transformers

    import albert.runtime.compiled as runtime
    from albert.runtime.policy import Runtime, prepare_for_inference

    B, T = a.shape
    torch.manual_seed(0)
    theirs = transformers.AlbertModel(transformers_config(albert.AlbertConfig.from_preset("albert-base-v2"))).eval()
    ids = torch.randint(5, 30000, (B, T))
    mask, types = torch.ones_like(ids), torch.zeros_like(ids)
    feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": types.numpy()}
    rounds: dict[str, list[dict]] = {"ours_int8_compile": [], "onnxruntime_fused_int8": []}
    with tempfile.TemporaryDirectory() as d:
        theirs.save_pretrained(d)
        fused_onnxruntime(theirs, Path(d), albert.AlbertConfig.from_preset("albert-base-v2"))
        cpu_settings = dict(runtime.INDUCTOR_CPU_SETTINGS)
        runtime.INDUCTOR_CPU_SETTINGS.pop("cpp_wrapper", None)  # no C++ wrapper: see the docstring
        try:
            ours = prepare_for_inference(albert.AlbertModel.from_pretrained(d), Runtime(torch.device("cpu"), "int8"),
                                         compile=True)
            with torch.inference_mode(), inductor_config.patch({"cpp.enable_kernel_profile": True}):
                ours(ids, mask, types)  # compiles, with inductor's own kernels named in the profile
                for r in range(a.rounds):
                    rounds["onnxruntime_fused_int8"].append(
                        onnxruntime_round(Path(d) / "fused_int8.onnx", feeds, a.runs, f"{d}/ort{r}"))
                    time.sleep(SETTLE_S)
                    rounds["ours_int8_compile"].append(ours_round(ours, (ids, mask, types), a.runs))
        finally:
            runtime.INDUCTOR_CPU_SETTINGS.update(cpu_settings)
    tables = {"ours_int8_compile": OURS_KINDS, "onnxruntime_fused_int8": ORT_KINDS}
    engines = {}
    for name, rs in rounds.items():
        names = set().union(*(r["per_op_ms"] for r in rs))
        ops = {op: statistics.median(r["per_op_ms"].get(op, 0.0) for r in rs) for op in names}
        engines[name] = {"total_ms": round(statistics.median(r["total_ms"] for r in rs), 2),
                         "total_ms_per_round": [round(r["total_ms"], 2) for r in rs],
                         "by_kind_ms": kinds(ops, tables[name]),
                         "per_op_ms": {k: round(v, 3) for k, v in sorted(ops.items(), key=lambda x: -x[1])
                                       if v >= 0.01}}
    ours_k, ort_k = engines["ours_int8_compile"]["by_kind_ms"], engines["onnxruntime_fused_int8"]["by_kind_ms"]
    result = {"benchmark": "latency_breakdown", "batch": B, "seq": T, "threads": torch.get_num_threads(),
              "rounds": a.rounds, "runs_per_round": a.runs, "machine": cpu_description(), "torch": torch.__version__,
              "engines": engines,
              "ours_over_onnxruntime": {k: round(ours_k[k] / ort_k[k], 2) for k in ours_k if ort_k[k] > 0} | {
                  "total": round(engines["ours_int8_compile"]["total_ms"]
                                 / engines["onnxruntime_fused_int8"]["total_ms"], 2)}}
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "engines"} | {
        k: {"total_ms": v["total_ms"], "by_kind_ms": v["by_kind_ms"]} for k, v in engines.items()}))


if __name__ == "__main__":
    main()
