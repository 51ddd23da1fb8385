"""Inference throughput and latency on this CPU: ours (bf16 / fp32) vs transformers (fp32 / bf16) vs ONNX Runtime
(fp32, our export), all on the same random albert-base-v2 weights.

    python bench/inference_speed.py [--sizes base] [--repeats 7] [--out bench/results/inference_speed.json]

Base: batch 8×128 for throughput and 1×128 for latency; contenders alternate so machine noise hits all
alike; medians are reported. Large/xxlarge (`--sizes base large xxlarge`): 8×128 throughput and peak
memory, each contender in its own process so that the peak resident memory is its own.
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

import torch

import albert
from albert.inference.pipelines import cpu_description, cpu_has_bf16
from common import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]


CONTENDERS = ["ours_bf16", "ours_fp32", "transformers_fp32", "transformers_bf16"]


def one_contender(size: str, contender: str, repeats: int) -> dict:
    """One model in this process: 8×128 throughput (median of `repeats`) and the process's peak memory."""
    import transformers

    name = f"albert-{size}-v2"
    torch.manual_seed(0)
    dtype = torch.bfloat16 if contender.endswith("bf16") else torch.float32
    if contender.startswith("ours"):
        model: torch.nn.Module = albert.AlbertModel(albert.AlbertConfig.from_preset(name)).to(dtype).eval()
    else:
        hf_cfg = transformers.AlbertConfig(**albert.AlbertConfig.from_preset(name).to_dict())
        hf_cfg._attn_implementation = "sdpa"
        model = transformers.AlbertModel(hf_cfg).to(dtype).eval()
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


def large_rows(size: str, repeats: int) -> dict:
    results = {}
    for contender in CONTENDERS:
        cmd = [sys.executable, __file__, "--one", size, contender, "--repeats", str(repeats)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[contender] = json.loads(out.stdout.strip().splitlines()[-1])
    row = {"model": f"albert-{size}-v2", "batch": 8, "seq": 128, "repeats": repeats,
           "parameters": results["ours_fp32"]["parameters"],
           "tokens_per_s": {k: v["tokens_per_s"] for k, v in results.items()},
           "ms": {k: v["ms"] for k, v in results.items()},
           "peak_rss_mb": {k: v["peak_rss_mb"] for k, v in results.items()},
           "ours_bf16_vs_transformers_fp32": round(results["ours_bf16"]["tokens_per_s"]
                                                   / results["transformers_fp32"]["tokens_per_s"], 2)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", nargs="+", default=["base"])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--large-repeats", type=int, default=3, help="repeats for large/xlarge/xxlarge")
    ap.add_argument("--no-onnx", action="store_true")
    ap.add_argument("--one", nargs=2, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "inference_speed.json"))
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one_contender(*a.one, a.repeats)))
        return
    import transformers

    rows = []
    for size in a.sizes:
        if size != "base":
            rows.append(large_rows(size, a.large_repeats))
            continue
        name = f"albert-{size}-v2"
        torch.manual_seed(0)
        hf_cfg = transformers.AlbertConfig(**albert.AlbertConfig.from_preset(name).to_dict())
        hf_cfg._attn_implementation = "sdpa"
        theirs = transformers.AlbertModel(hf_cfg).eval()
        theirs_bf16 = transformers.AlbertModel(hf_cfg).eval()
        theirs_bf16.load_state_dict(theirs.state_dict())
        theirs_bf16.to(torch.bfloat16)
        with tempfile.TemporaryDirectory() as d:
            theirs.save_pretrained(d)
            ours32 = albert.AlbertModel.from_pretrained(d).eval()
            ours16 = albert.AlbertModel.from_pretrained(d, dtype=torch.bfloat16).eval()
            session = None
            if not a.no_onnx and size == "base":
                import onnxruntime as ort

                from albert.export import export_onnx

                export_onnx(albert.AlbertModel.from_pretrained(d), Path(d) / "m.onnx")
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = torch.get_num_threads()
                # ORT's threads spin after each run and would steal the cores from the next contender
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                session = ort.InferenceSession(str(Path(d) / "m.onnx"), opts)
        for B, T in ((8, 128), (1, 128)):
            ids = torch.randint(5, 30000, (B, T))
            mask = torch.ones(B, T, dtype=torch.long)
            types = torch.zeros(B, T, dtype=torch.long)
            feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": types.numpy()}
            contenders = {
                "ours_bf16": partial(ours16, ids, mask, types),
                "ours_fp32": partial(ours32, ids, mask, types),
                "transformers_fp32": partial(theirs, ids, mask, types),
                "transformers_bf16": partial(theirs_bf16, ids, mask, types),
            }
            if session is not None:
                contenders["onnxruntime_fp32"] = partial(session.run, None, feeds)
            times: dict[str, list[float]] = {k: [] for k in contenders}
            with torch.inference_mode():
                for fn in contenders.values():
                    fn()  # warm-up
                for _ in range(a.repeats):
                    for k, fn in contenders.items():
                        t = time.perf_counter()
                        fn()
                        times[k].append(time.perf_counter() - t)
            med = {k: statistics.median(v) for k, v in times.items()}
            row = {"model": name, "batch": B, "seq": T,
                   "tokens_per_s": {k: round(B * T / v, 1) for k, v in med.items()},
                   "ms": {k: round(v * 1000, 1) for k, v in med.items()},
                   "ours_bf16_vs_transformers_fp32": round(med["transformers_fp32"] / med["ours_bf16"], 2)}
            if "onnxruntime_fp32" in med:
                row["ours_bf16_vs_onnxruntime_fp32"] = round(med["onnxruntime_fp32"] / med["ours_bf16"], 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = Path(a.out)
    base_peak = peak_rss_mb() if "base" in a.sizes else None
    if out.is_file():  # rows measured earlier for other sizes stay; re-measured ones are replaced
        fresh = {(r["model"], r["batch"], r["seq"]) for r in rows}
        earlier = json.loads(out.read_text())
        base_peak = base_peak or earlier.get("peak_rss_mb_base_all_contenders")
        rows = [r for r in earlier["rows"] if (r["model"], r["batch"], r["seq"]) not in fresh] + rows
    result = {"benchmark": "inference_speed", "threads": torch.get_num_threads(), "cpu_bf16": cpu_has_bf16(),
              "torch": torch.__version__, "transformers": transformers.__version__, "machine": cpu_description(),
              "repeats": a.repeats, "peak_rss_mb_base_all_contenders": base_peak, "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
