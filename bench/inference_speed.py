"""Inference throughput and latency on this CPU: ours (bf16 / fp32 / int8) vs transformers (fp32 / bf16 / int8, and
fp32 under torch.compile) vs ONNX Runtime (our export in fp32; transformers' export fused by
onnxruntime.transformers.optimizer, in fp32 and dynamic int8) vs OpenVINO (transformers' export, compiled by
OpenVINO's CPU plugin in fp32 and in its default precision: bf16 where the CPU has bf16 units, else fp32), all on the
same random albert-base-v2 weights. OpenVINO comes from `requirements/bench.txt` (left out when not installed).
Every contender's achieved GFLOP/s is reported beside this CPU's fp32 and int8 GEMM rates, measured in the
same run (2 threads, the matmul shapes of the model).

    python bench/inference_speed.py [--sizes base] [--repeats 7] [--out bench/results/inference_speed.json]

int8 is dynamic quantization of the encoder's matrices: ours through `--precision int8`
(albert.runtime.freeze.quantize_int8), transformers' through torch's documented route
(torch.ao.quantization.quantize_dynamic on its nn.Linear layers). On a CPU without bf16 units the bf16
contenders are left out (bf16 is emulated there and takes minutes); --all keeps them.

Base: batch 8×128 for throughput, 1×128 for latency and 1×16 for a short query's (--shapes for others); contenders
alternate so machine noise hits all alike; medians are reported. ONNX Runtime keeps its default session settings
(its threads spin between runs), and every contender starts on idle cores (SETTLE_S). `latency_alone` measures
1×128 again with ours, ONNX Runtime's fused graphs and OpenVINO each alone in its own process, alternating processes.
Large/xxlarge (`--sizes base large xxlarge`): 8×128 throughput and peak memory, each contender in its own process
so that the peak resident memory is its own.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch

import albert
from albert.runtime.kernels import cpu_description, cpu_has_bf16
from common import gemm_rates, model_gflop, peak_rss_mb, transformers_config

ROOT = Path(__file__).resolve().parents[1]


CONTENDERS = ["ours_bf16", "ours_fp32", "transformers_fp32", "transformers_bf16"]


def ratios(med: dict[str, float]) -> dict[str, float]:
    """Each of our contenders against transformers' fp32, ONNX Runtime (our export; transformers' export fused, fp32
    and int8) and OpenVINO (fp32, default): speed ratios, > 1 means ours is faster."""
    out = {}
    for ours in (k for k in med if k.startswith("ours")):
        for ref in ("transformers_fp32", "onnxruntime_fp32", "onnxruntime_fused_fp32", "onnxruntime_fused_int8",
                    "openvino_fp32", "openvino_default"):
            if ref in med:
                out[f"{ours}_vs_{ref}"] = round(med[ref] / med[ours], 2)
    return out


def ort_session(path: Path, profile_prefix: str | None = None) -> Any:
    """An ONNX Runtime CPU session as every ORT contender here runs: its default settings (threads spinning between
    runs), on as many threads as torch's contenders; `profile_prefix`: with ORT's profiler on, writing there
    (bench/latency_breakdown.py)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def fused_onnxruntime(theirs: torch.nn.Module, directory: Path, config: albert.AlbertConfig) -> dict[str, object]:
    """transformers' own export (TorchScript exporter, the graph ORT's fusions match) through
    onnxruntime.transformers.optimizer (model_type bert), and that fused graph with dynamic int8 weights."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    plain = directory / "transformers.onnx"
    shape = (1, 16)
    example = (torch.ones(shape, dtype=torch.long), torch.ones(shape, dtype=torch.long),
               torch.zeros(shape, dtype=torch.long))
    axes = {0: "batch", 1: "sequence"}
    torch.onnx.export(theirs, example, str(plain), input_names=["input_ids", "attention_mask", "token_type_ids"],
                      output_names=["last_hidden_state"], dynamic_axes={k: axes for k in
                                                                        ("input_ids", "attention_mask",
                                                                         "token_type_ids", "last_hidden_state")},
                      opset_version=17, dynamo=False)
    fused = optimize_model(str(plain), model_type="bert", num_heads=config.num_attention_heads,
                           hidden_size=config.hidden_size)
    fused_path = directory / "fused.onnx"
    fused.save_model_to_file(str(fused_path))
    int8_path = directory / "fused_int8.onnx"
    import onnx

    # the fused ops (SkipLayerNormalization, FastGelu) are of ORT's own domain: shape inference cannot type their
    # outputs, so the quantizer is told that what it cannot type is fp32
    quantize_dynamic(str(fused_path), str(int8_path), weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    sessions = {}
    for name, path in (("onnxruntime_fused_fp32", fused_path), ("onnxruntime_fused_int8", int8_path)):
        sessions[name] = ort_session(path)
    ops: dict[str, int] = {}
    for node in fused.model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    sessions.update(openvino_models(plain, cpu_has_bf16()))
    sessions["fused_ops"] = {k: v for k, v in ops.items() if k in ("Attention", "SkipLayerNormalization", "FastGelu",
                                                                      "BiasGelu", "LayerNormalization", "Gelu")}
    return sessions


def openvino_models(onnx_path: Path, bf16: bool) -> dict[str, Any]:
    """transformers' ONNX export compiled by OpenVINO for the CPU as its documentation recommends for one request at a
    time (PERFORMANCE_HINT LATENCY: one stream on all the cores), threads = torch's; fp32 asked for explicitly, and
    (where the CPU has bf16 units) OpenVINO's default precision, which is bf16 there. Shapes stay dynamic, as for
    every other contender. Empty when openvino is not installed."""
    try:
        import openvino as ov
    except ImportError:
        return {}
    core = ov.Core()
    model = core.read_model(str(onnx_path))
    base = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": torch.get_num_threads()}
    compiled = {"openvino_fp32": core.compile_model(model, "CPU", base | {"INFERENCE_PRECISION_HINT": "f32"})}
    if bf16:
        compiled["openvino_default"] = core.compile_model(model, "CPU", base)
    return compiled


def openvino_call(compiled: Any, feeds: dict[str, Any]) -> Any:
    """One synchronous inference, as a caller would make it (a new request each call costs ~µs)."""
    return compiled(feeds)


def one_contender(size: str, contender: str, repeats: int) -> dict:
    """One model in this process: 8×128 throughput (median of `repeats`) and the process's peak memory."""
    import transformers

    name = f"albert-{size}-v2"
    torch.manual_seed(0)
    dtype = torch.bfloat16 if contender.endswith("bf16") else torch.float32
    if contender.startswith("ours"):
        model: torch.nn.Module = albert.AlbertModel(albert.AlbertConfig.from_preset(name)).to(dtype).eval()
    else:
        model = transformers.AlbertModel(transformers_config(albert.AlbertConfig.from_preset(name))).to(dtype).eval()
    B, T = 8, 128
    ids = torch.randint(5, 30000, (B, T))
    mask = torch.ones(B, T, dtype=torch.long)
    times = []
    with torch.inference_mode():
        model(ids, mask)  # warm-up
        for _ in range(repeats):
            t = time.perf_counter()
            model(ids, mask)
            times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return {"contender": contender, "tokens_per_s": round(B * T / med, 1), "ms": round(med * 1000, 1),
            "peak_rss_mb": peak_rss_mb(), "parameters": sum(p.numel() for p in model.parameters())}


def large_rows(size: str, repeats: int, contenders: list[str]) -> dict:
    results = {}
    for contender in contenders:
        cmd = [sys.executable, __file__, "--one", size, contender, "--repeats", str(repeats)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[contender] = json.loads(out.stdout.strip().splitlines()[-1])
    row = {"model": f"albert-{size}-v2", "batch": 8, "seq": 128, "repeats": repeats,
           "parameters": results["ours_fp32"]["parameters"],
           "tokens_per_s": {k: v["tokens_per_s"] for k, v in results.items()},
           "ms": {k: v["ms"] for k, v in results.items()},
           "peak_rss_mb": {k: v["peak_rss_mb"] for k, v in results.items()},
           **ratios({k: 1 / v["tokens_per_s"] for k, v in results.items()})}
    print(json.dumps(row), flush=True)
    return row


ALONE = ["ours_fp32", "onnxruntime_fused_fp32", "openvino_fp32", "ours_int8", "ours_int8_compile",
         "onnxruntime_fused_int8"]
SETTLE_S = 0.05  # idle time before each contender: longer than ORT's and libgomp's spinning


def alone_contender(contender: str, directory: Path, rounds: int) -> dict:
    """1×128 latency of one contender in this process: ours as the pipelines prepare it (`_compile`: and compile it,
    as `--compile` does), ONNX Runtime's fused graph with its default session settings (threads spinning between
    runs)."""
    torch.manual_seed(0)
    ids = torch.randint(5, 30000, (1, 128))
    mask, types = torch.ones_like(ids), torch.zeros_like(ids)
    if contender.startswith("onnxruntime"):
        session = ort_session(directory / ("fused_int8.onnx" if contender.endswith("int8") else "fused.onnx"))
        feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": types.numpy()}
        fn = partial(session.run, None, feeds)
    elif contender.startswith("openvino"):
        compiled = openvino_models(directory / "transformers.onnx", contender.endswith("default"))[contender]
        fn = partial(openvino_call, compiled, {"input_ids": ids.numpy(), "attention_mask": mask.numpy(),
                                               "token_type_ids": types.numpy()})
    else:
        from albert.runtime.policy import Runtime, prepare_for_inference

        runtime = Runtime(torch.device("cpu"), contender.removeprefix("ours_").removesuffix("_compile"))  # type: ignore[arg-type]
        model = prepare_for_inference(albert.AlbertModel.from_pretrained(directory), runtime,
                                      compile=contender.endswith("_compile"))
        fn = partial(model, ids, mask, types)
    times = []
    with torch.inference_mode():
        fn()  # warm-up
        for _ in range(rounds):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return {"contender": contender, "ms": round(statistics.median(times) * 1000, 2)}


def alone_latency(directory: Path, rounds: int, processes: int, contenders: list[str]) -> dict:
    """1×128 latency with every contender alone in its own process, `processes` times each, alternating; the
    median of the processes' medians. Why: how a practitioner runs one engine, with nothing else in the process
    (no other engine's threads, allocator or caches)."""
    ms: dict[str, list[float]] = {c: [] for c in contenders}
    for _ in range(processes):
        for contender in contenders:
            cmd = [sys.executable, __file__, "--alone", contender, str(directory), "--latency-repeats", str(rounds)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            ms[contender].append(json.loads(out.stdout.strip().splitlines()[-1])["ms"])
    med = {c: statistics.median(v) for c, v in ms.items()}
    row = {"batch": 1, "seq": 128, "rounds": rounds, "processes": processes, "ms": med, "ms_per_process": ms,
           **ratios(med)}
    print(json.dumps(row), flush=True)
    return row


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def shape(text: str) -> tuple[int, int]:
    """'8x128' → (8, 128)."""
    try:
        batch, tokens = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected BATCHxTOKENS such as 8x128, got {text!r}") from None
    if batch < 1 or not 2 <= tokens <= 512:
        raise argparse.ArgumentTypeError(f"batch must be >= 1 and tokens 2-512, got {text!r}")
    return batch, tokens


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", nargs="+", default=["base"])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--shapes", nargs="+", type=shape, default=[(8, 128), (1, 128), (1, 16)], metavar="BxT",
                    help="batch × tokens to time albert-base at (default 8x128 1x128 1x16: throughput, latency, and "
                         "a short query's latency, where fixed costs weigh most)")
    ap.add_argument("--latency-repeats", type=int, default=31,
                    help="rounds for a batch of one (1×128, 1×16): cheap, and the noise of a shared machine weighs "
                         "more on short runs")
    ap.add_argument("--large-repeats", type=int, default=3, help="repeats for large/xlarge/xxlarge")
    ap.add_argument("--no-onnx", action="store_true")
    ap.add_argument("--no-compile", action="store_true", help="leave out transformers under torch.compile")
    ap.add_argument("--all", action="store_true", help="bf16 contenders even on a CPU without bf16 units")
    ap.add_argument("--alone-processes", type=int, default=3,
                    help="1×128 latency again with each contender alone in its own process, this many times (0: not)")
    ap.add_argument("--one", nargs=2, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--alone", nargs=2, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "inference_speed.json"))
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one_contender(*a.one, a.repeats)))
        return
    if a.alone:
        print(json.dumps(alone_contender(a.alone[0], Path(a.alone[1]), a.latency_repeats)))
        return
    import transformers

    from albert.runtime.policy import Runtime, prepare_for_inference

    bf16 = a.all or cpu_has_bf16()
    rows = []
    alone: dict | None = None
    for size in a.sizes:
        if size != "base":
            rows.append(large_rows(size, a.large_repeats, [c for c in CONTENDERS if bf16 or not c.endswith("bf16")]))
            continue
        name = f"albert-{size}-v2"
        torch.manual_seed(0)
        hf_cfg = transformers_config(albert.AlbertConfig.from_preset(name))
        theirs = transformers.AlbertModel(hf_cfg).eval()
        theirs_bf16 = transformers.AlbertModel(hf_cfg).eval()
        theirs_bf16.load_state_dict(theirs.state_dict())
        theirs_bf16.to(torch.bfloat16)
        theirs_int8 = transformers.AlbertModel(hf_cfg).eval()
        theirs_int8.load_state_dict(theirs.state_dict())
        theirs_int8 = torch.ao.quantization.quantize_dynamic(theirs_int8, {torch.nn.Linear}, dtype=torch.qint8)
        compiled = None if a.no_compile else torch.compile(theirs)
        with tempfile.TemporaryDirectory() as d:
            theirs.save_pretrained(d)
            # ours as the pipelines run it: prepared by albert.runtime.policy for each precision
            cpu = torch.device("cpu")
            ours32 = prepare_for_inference(albert.AlbertModel.from_pretrained(d), Runtime(cpu, "fp32"))
            ours16 = prepare_for_inference(albert.AlbertModel.from_pretrained(d), Runtime(cpu, "bf16")) if bf16 \
                else None
            ours8 = prepare_for_inference(albert.AlbertModel.from_pretrained(d), Runtime(cpu, "int8"))
            # `--compile`, as the pipelines compile: inductor with the weights frozen (folded and prepacked), fp32
            # on plain matrices
            ours_compiled = ours8_compiled = None
            if not a.no_compile:
                ours_compiled = prepare_for_inference(albert.AlbertModel.from_pretrained(d), Runtime(cpu, "fp32"),
                                                      compile=True)
                ours8_compiled = prepare_for_inference(albert.AlbertModel.from_pretrained(d), Runtime(cpu, "int8"),
                                                       compile=True)
            session = None
            fused: dict[str, object] = {}
            if not a.no_onnx and size == "base":
                fused = fused_onnxruntime(theirs, Path(d), albert.AlbertConfig.from_preset(name))
                from albert.convert.export import export_onnx

                export_onnx(albert.AlbertModel.from_pretrained(d), Path(d) / "m.onnx")
                session = ort_session(Path(d) / "m.onnx")
                if a.alone_processes:
                    alone = alone_latency(Path(d), a.latency_repeats, a.alone_processes,
                                          [c for c in ALONE if not (a.no_compile and c.endswith("_compile"))
                                           and (c in fused or not c.startswith("openvino"))])
        for B, T in a.shapes:
            ids = torch.randint(5, 30000, (B, T))
            mask = torch.ones(B, T, dtype=torch.long)
            types = torch.zeros(B, T, dtype=torch.long)
            feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": types.numpy()}
            contenders = {
                **({"ours_bf16": partial(ours16, ids, mask, types)} if ours16 is not None else {}),
                "ours_fp32": partial(ours32, ids, mask, types),
                "ours_int8": partial(ours8, ids, mask, types),
                "transformers_fp32": partial(theirs, ids, mask, types),
                "transformers_bf16": partial(theirs_bf16, ids, mask, types),
                "transformers_int8": partial(theirs_int8, ids, mask, types),
            }
            if not bf16:
                contenders = {k: v for k, v in contenders.items() if not k.endswith("bf16")}
            if session is not None:
                contenders["onnxruntime_fp32"] = partial(session.run, None, feeds)
            for key in ("onnxruntime_fused_fp32", "onnxruntime_fused_int8"):
                if key in fused:
                    contenders[key] = partial(fused[key].run, None, feeds)  # type: ignore[attr-defined]
            for key in ("openvino_fp32", "openvino_default"):
                if key in fused:
                    contenders[key] = partial(openvino_call, fused[key], feeds)
            if not a.no_compile:
                contenders["transformers_fp32_compile"] = partial(compiled, ids, mask, types)
                contenders["ours_fp32_compile"] = partial(ours_compiled, ids, mask, types)
                contenders["ours_int8_compile"] = partial(ours8_compiled, ids, mask, types)
            times: dict[str, list[float]] = {k: [] for k in contenders}
            rounds = a.repeats if B > 1 else a.latency_repeats
            with torch.inference_mode():
                for fn in contenders.values():
                    fn()  # warm-up
                for _ in range(rounds):
                    for k, fn in contenders.items():
                        # ONNX Runtime's threads (and torch's OpenMP ones, for a few ms) spin after a run and take
                        # the cores from whoever runs next: ours int8 at 1 × 128 took 97 ms right after a spinning
                        # ORT and 49 after 50 ms idle; ORT took 59 right after ours and 52 after idle
                        time.sleep(SETTLE_S)
                        t = time.perf_counter()
                        fn()
                        times[k].append(time.perf_counter() - t)
            med = {k: statistics.median(v) for k, v in times.items()}
            gflop = model_gflop(albert.AlbertConfig.from_preset(name), B, T)
            row = {"model": name, "batch": B, "seq": T, "rounds": rounds, "model_gflop": round(gflop, 2),
                   "tokens_per_s": {k: round(B * T / v, 1) for k, v in med.items()},
                   "ms": {k: round(v * 1000, 1) for k, v in med.items()},
                   "gflops": {k: round(gflop / v, 1) for k, v in med.items()},
                   **gemm_rates(768, 3072, B * T, max(3, a.repeats), bf16=bf16), **ratios(med)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = Path(a.out)
    base_peak = peak_rss_mb() if "base" in a.sizes else None
    if out.is_file():  # rows measured earlier for other sizes stay; re-measured ones are replaced
        fresh = {(r["model"], r["batch"], r["seq"]) for r in rows}
        earlier = json.loads(out.read_text())
        base_peak = base_peak or earlier.get("peak_rss_mb_base_all_contenders")
        alone = alone or earlier.get("latency_alone")
        rows = [r for r in earlier["rows"] if (r["model"], r["batch"], r["seq"]) not in fresh] + rows
    result = {"benchmark": "inference_speed", "threads": torch.get_num_threads(), "cpu_bf16": cpu_has_bf16(),
              "torch": torch.__version__, "transformers": transformers.__version__, "machine": cpu_description(),
              "onnxruntime": _version("onnxruntime"), "openvino": _version("openvino"),
              "repeats": a.repeats, "peak_rss_mb_base_all_contenders": base_peak, "rows": rows,
              "latency_alone": alone}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
