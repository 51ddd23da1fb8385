"""Pretraining throughput: our training step vs transformers' AlbertForPreTraining + torch AdamW.

    python bench/pretrain_speed.py [--model albert-base-v2] [--batch 8] [--seq 128] [--steps 5]

Each contender runs in its own process (so peak RSS is its own): ours in fp32 and bf16 (MLM head on
the masked positions only, LAMB), transformers in fp32 and with bf16 autocast (MLM logits everywhere,
AdamW). Same config, same batch, same masked positions. Results: bench/results/pretrain_speed.json.
On a CPU without bf16 units (no AMX, no AVX512-BF16) the bf16 rows are left out unless named with
--contenders: bf16 is emulated there, and one bf16 contender took over ten minutes for base on an AVX2 EPYC.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import albert
from albert.runtime.kernels import cpu_description, cpu_has_bf16
from common import gemm_rates, model_gflop, peak_rss_mb, transformers_config

ROOT = Path(__file__).resolve().parents[1]
CONTENDERS = ["ours-fp32", "ours-bf16", "transformers-fp32", "transformers-bf16"]


def make_batch(B: int, T: int, V: int, P: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (B, T), generator=g)
    positions = torch.stack([torch.randperm(T - 2, generator=g)[:P].sort().values + 1 for _ in range(B)])
    labels_at = torch.gather(ids, 1, positions)
    full_labels = torch.full((B, T), -100)
    full_labels.scatter_(1, positions, labels_at)
    return {"input_ids": ids, "attention_mask": torch.ones(B, T, dtype=torch.long),
            "token_type_ids": (torch.arange(T) >= T // 2).long().expand(B, T).contiguous(),
            "positions": positions, "labels_at": labels_at, "full_labels": full_labels,
            "sop": torch.randint(0, 2, (B,), generator=g)}


def run_one(name: str, model_name: str, B: int, T: int, steps: int) -> dict:
    import albert
    from albert.train.optim import build_optimizer

    torch.manual_seed(0)
    cfg = albert.AlbertConfig.from_preset(model_name)
    P = max(1, min(20, round(T * 0.15)))
    batch = make_batch(B, T, cfg.vocab_size, P)
    bf16 = name.endswith("bf16")
    if name.startswith("ours"):
        model = albert.AlbertForPreTraining(cfg).train()
        opt = build_optimizer(model, "lamb", 1e-4, 0.01, (0.9, 0.999), 1e-6)

        def step() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            token_type_ids=batch["token_type_ids"], mlm_positions=batch["positions"],
                            labels=batch["labels_at"], sentence_order_label=batch["sop"])
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
    else:
        import transformers

        model = transformers.AlbertForPreTraining(transformers_config(cfg)).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)

        def step() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            token_type_ids=batch["token_type_ids"], labels=batch["full_labels"],
                            sentence_order_label=batch["sop"])
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

    step()  # warm-up
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return {"contender": name, "tokens_per_s": round(B * T / med, 1), "step_s": round(med, 3),
            "step_times": [round(x, 3) for x in times],
            "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="albert-base-v2")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=None,
                    help="default: all four, or the fp32 two on a CPU without bf16 units")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "pretrain_speed.json"))
    a = ap.parse_args()
    if a.one:
        print(json.dumps(run_one(a.one, a.model, a.batch, a.seq, a.steps)))
        return
    contenders = a.contenders or [c for c in CONTENDERS if cpu_has_bf16() or c.endswith("fp32")]
    if "transformers-fp32" not in contenders:
        ap.error("the ratios are taken against transformers-fp32: include it")
    rows = {}
    for name in contenders:
        cmd = [sys.executable, __file__, "--one", name, "--model", a.model, "--batch", str(a.batch),
               "--seq", str(a.seq), "--steps", str(a.steps)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(rows[name]), flush=True)
    base = rows["transformers-fp32"]["tokens_per_s"]
    import transformers

    # model FLOPs of a training step: forward + backward ≈ 3 × the encoder's forward (the MLM head, at the masked
    # positions only, is left out: < 1% here), against this CPU's GEMM rate on the model's largest matmul
    config = albert.AlbertConfig.from_preset(a.model)
    step_gflop = 3 * model_gflop(config, a.batch, a.seq)
    for row in rows.values():
        row["achieved_gflops"] = round(step_gflop / row["step_s"], 1)
    gemm = gemm_rates(config.hidden_size, config.intermediate_size, a.batch * a.seq, 5, bf16=cpu_has_bf16())
    for row in rows.values():
        rate = gemm["gemm_bf16_gflops" if row["contender"].endswith("bf16") else "gemm_fp32_gflops"]
        row["fraction_of_gemm_rate"] = round(row["achieved_gflops"] / rate, 3)

    result = {"benchmark": "pretrain_speed", "model": a.model, "batch": a.batch, "seq": a.seq, "steps": a.steps,
              "threads": torch.get_num_threads(), "torch": torch.__version__,
              "transformers": transformers.__version__, "machine": cpu_description(), "cpu_bf16": cpu_has_bf16(),
              "step_gflop": round(step_gflop, 1), **gemm, "rows": rows,
              "ratio_vs_transformers_fp32": {k: round(v["tokens_per_s"] / base, 3) for k, v in rows.items()}}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["ratio_vs_transformers_fp32"]))


if __name__ == "__main__":
    main()
