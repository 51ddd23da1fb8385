"""On a CUDA GPU: correctness against the CPU and against transformers, then throughput and peak GPU memory.

    python bench/gpu_check.py [--sizes base large xxlarge] [--out bench/results/gpu_check.json]

Correctness (fp32 with TF32 off, so CPU and GPU should agree to rounding):
- the embedded model's masked-LM logits, CPU vs GPU, and the fill-mask pipeline's top-1 on the GPU (bf16, its
  default there) against the CPU's fp32 top-1 over the masked words of the test fixture;
- albert-base-v2 (random weights): our GPU output vs transformers' on the GPU with the same weights;
- one pretraining step (loss and gradient norm, dropout off) on the GPU vs the CPU.
Training-step utilisation first (the issue's targets: albert-base-v2 ≥ 35% MFU, the embedded model's shape ≥ 20%,
bf16, sequence 128): tokens/s and model FLOPs (albert.modeling.config.forward_flops × 3) per second of ours eager on
padded
rows, ours packed under torch.compile (what `packing: true` and `compile: true` run), and transformers'
AlbertForPreTraining (AdamW, SDPA), as MFU against the datasheet's dense bf16 peak and as a fraction of the bf16
GEMM rate measured in the same run. Then inference, albert-{base,large,xxlarge}-v2, batch 32×128: ours (bf16 and
fp32 weights) vs transformers (fp32, bf16; SDPA). Random weights; medians of timed repeats after warm-ups,
synchronised; peak GPU memory is torch's max_memory_allocated for that contender alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import albert
from albert.modeling.config import forward_flops
from albert.train.optim import build_optimizer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from common import transformers_config  # noqa: E402
from pretrain_speed import make_batch  # noqa: E402
from quantized_accuracy import masked_sample  # noqa: E402


def timed(fn: Callable[[], Any], repeats: int, warmups: int = 3) -> float:
    for _ in range(warmups):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def correctness() -> dict:
    import transformers

    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    res: dict[str, Any] = {}
    # 1. the embedded model: logits CPU vs GPU in fp32, and the GPU pipeline's default (bf16) top-1 vs CPU fp32
    cpu = albert.pipeline("fill-mask", device="cpu", precision="fp32")
    gpu32 = albert.pipeline("fill-mask", device="cuda", precision="fp32")
    gpu = albert.pipeline("fill-mask", device="cuda")
    texts = [text for text, _ in masked_sample(300)]
    enc = cpu.tokenizer(texts[:32], padding=True, return_tensors="pt")
    with torch.inference_mode():
        a = cpu.model(**enc).logits
        b = gpu32.model(**{k: v.cuda() for k, v in enc.items()}).logits.cpu()
    res["embedded_logits_max_abs_diff_cpu_vs_cuda_fp32"] = float((a - b).abs().max())
    agree = sum(x[0]["token"] == y[0]["token"] for x, y in zip(cpu(texts, top_k=1), gpu(texts, top_k=1)))
    res["embedded_fill_mask_top1_agreement_cuda_default_vs_cpu_fp32"] = {
        "agree": agree, "of": len(texts),
        # the pipeline keeps fp32 parameters and runs the encoder on bf16 copies (albert.runtime.freeze.freeze_bf16)
        "gpu_encoder_dtype": str(torch.bfloat16 if any(getattr(m, "inference_dtype", None) == torch.bfloat16
                                                       for m in gpu.model.modules()) else torch.float32)}
    # 2. albert-base-v2 weights: ours vs transformers, both on the GPU
    torch.manual_seed(0)
    ours = albert.AlbertModel(albert.AlbertConfig.from_preset("albert-base-v2")).eval()
    with tempfile.TemporaryDirectory() as d:
        ours.save_pretrained(d)
        theirs = transformers.AlbertModel.from_pretrained(d, attn_implementation="sdpa").eval().cuda()
    ours = ours.cuda()
    ids = torch.randint(5, 30000, (4, 128), device="cuda")
    mask = torch.ones_like(ids)
    mask[1, 100:] = 0
    with torch.inference_mode():
        x, y = ours(ids, mask).last_hidden_state, theirs(input_ids=ids, attention_mask=mask).last_hidden_state
    res["base_hidden_max_abs_diff_ours_vs_transformers_cuda_fp32"] = float((x - y)[mask.bool()].abs().max())
    del ours, theirs
    # 3. one pretraining step, CPU vs GPU
    cfg = albert.AlbertConfig.from_preset("albert-base-v2")
    batch = make_batch(8, 128, cfg.vocab_size, 20)
    grads = {}
    for dev in ("cpu", "cuda"):
        torch.manual_seed(0)
        # eval mode: the SOP head's dropout (classifier_dropout_prob 0.1) would draw different masks on the two
        # devices' generators (the 2026-11-23 run did that: loss 0.03 apart); gradients flow all the same
        model = albert.AlbertForPreTraining(cfg).to(dev).eval()
        out = model(input_ids=batch["input_ids"].to(dev), attention_mask=batch["attention_mask"].to(dev),
                    token_type_ids=batch["token_type_ids"].to(dev), mlm_positions=batch["positions"].to(dev),
                    labels=batch["labels_at"].to(dev), sentence_order_label=batch["sop"].to(dev))
        out.loss.backward()
        grads[dev] = (out.loss.item(), torch.nn.utils.clip_grad_norm_(model.parameters(), 1e9).item())
    res["pretrain_step_cpu_vs_cuda_fp32"] = {"loss": grads, "loss_abs_diff": abs(grads["cpu"][0] - grads["cuda"][0]),
                                             "grad_norm_rel_diff": abs(grads["cpu"][1] / grads["cuda"][1] - 1)}
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32  # as they were
    return res


def build(cfg: albert.AlbertConfig, name: str, pretraining: bool) -> torch.nn.Module:
    """A contender's model with random weights (seed 0): ours or transformers' (SDPA attention)."""
    import transformers

    torch.manual_seed(0)
    if name.startswith("ours"):
        return albert.AlbertForPreTraining(cfg) if pretraining else albert.AlbertModel(cfg)
    hf_cfg = transformers_config(cfg)
    return transformers.AlbertForPreTraining(hf_cfg) if pretraining else transformers.AlbertModel(hf_cfg)


def measure(fn: Callable[[], Any], tokens: int, repeats: int) -> tuple[int, int]:
    """(tokens/s, peak GPU MiB) of fn."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    sec = timed(fn, repeats)
    return round(tokens / sec), round(torch.cuda.max_memory_allocated() / 2**20)


def inference_one(cfg: albert.AlbertConfig, name: str, ids: torch.Tensor, repeats: int) -> tuple[int, int]:
    dtype = torch.bfloat16 if name.endswith("bf16") else torch.float32
    model = build(cfg, name, pretraining=False).to("cuda", dtype).eval()
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        return measure(lambda: model(input_ids=ids, attention_mask=mask), ids.numel(), repeats)


def inference(size: str, B: int, T: int, repeats: int) -> dict:
    cfg = albert.AlbertConfig.from_preset(cfg_name(size))
    ids = torch.randint(5, cfg.vocab_size, (B, T), device="cuda")
    row: dict[str, Any] = {"model": cfg_name(size), "batch": B, "seq": T, "tokens_per_s": {}, "peak_mb": {}}
    for name in ("ours_bf16", "ours_fp32", "transformers_fp32", "transformers_bf16"):
        row["tokens_per_s"][name], row["peak_mb"][name] = inference_one(cfg, name, ids, repeats)
    tps = row["tokens_per_s"]
    row["ours_bf16_vs_transformers_fp32"] = round(tps["ours_bf16"] / tps["transformers_fp32"], 2)
    row["ours_bf16_vs_transformers_bf16"] = round(tps["ours_bf16"] / tps["transformers_bf16"], 2)
    return row


def packed_batch(B: int, T: int, V: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Rows of T positions packed with examples of 16–T tokens (albert.data.pretraining.collate_packed's layout):
    what `packing: true` feeds the model, with every row full."""
    from albert.data.pretraining import MaskedExample, collate_packed, pack_rows

    g = np.random.default_rng(seed)
    examples = []
    while sum(len(e.input_ids) for e in examples) < B * T * 1.02:
        n = int(g.integers(16, T + 1))
        ids = g.integers(5, V, n)
        at = np.sort(g.choice(np.arange(1, n - 1), size=max(1, round(0.15 * n)), replace=False))
        examples.append(MaskedExample(ids, (np.arange(n) >= n // 2).astype(np.int64), at, ids[at], int(g.integers(2)),
                                      [1]))
    rows = pack_rows([len(e.input_ids) for e in examples], T)
    rows = sorted(rows, key=lambda r: -sum(len(examples[i].input_ids) for i in r))[:B]
    return collate_packed([[examples[i] for i in r] for r in rows], 0)


# Contenders of the training step: (ours?, packed rows?, torch.compile?). Ours: LAMB (foreach), the MLM head on the
# masked positions only; transformers': AdamW, MLM logits everywhere. All bf16 autocast.
TRAINING = {"ours_bf16": (True, False, False), "ours_bf16_packed_compiled": (True, True, True),
            "transformers_bf16": (False, False, False)}


def training_one(cfg: albert.AlbertConfig, name: str, B: int, T: int, repeats: int) -> tuple[int, int, float]:
    """(tokens/s, peak MiB, model TFLOP/s)."""
    ours, packed, compiled = TRAINING[name]
    model = build(cfg, name, pretraining=True).cuda().train()
    if packed:
        batch = {k: v.cuda() for k, v in packed_batch(B, T, cfg.vocab_size).items()}
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids", "position_ids",
                                        "example_ids", "sop_positions", "sentence_order_label")}
        inputs |= {"mlm_positions": batch["mlm_positions"], "labels": batch["labels"]}
        predictions = batch["labels"].numel()
    else:
        batch = {k: v.cuda() for k, v in make_batch(B, T, cfg.vocab_size, 20).items()}
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
        inputs["sentence_order_label"] = batch["sop"]
        if ours:
            inputs |= {"mlm_positions": batch["positions"], "labels": batch["labels_at"]}
        else:
            inputs["labels"] = batch["full_labels"]
        predictions = batch["positions"].numel() if ours else B * T
    if ours:
        opt = build_optimizer(model, "lamb", 1e-4, 0.01, (0.9, 0.999), 1e-6)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    forward = torch.compile(model) if compiled else model

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = forward(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    if compiled:  # compile (and autotune) before the timed warm-ups
        for _ in range(3):
            step()
    rows, length = inputs["input_ids"].shape  # (packed rows may end a position or two short of T)
    tps, peak = measure(step, rows * length, repeats)
    steps_per_s = tps / (rows * length)
    return tps, peak, 3 * forward_flops(cfg, rows, length, predictions) * steps_per_s / 1e12


def peak_bf16_tflops(name: str) -> float | None:
    """The dense bf16 tensor-core peak of the device's datasheet (no sparsity), for MFU."""
    for key, tflops in (("H200", 989.4), ("H100 SXM", 989.4), ("H100 PCIe", 756.0), ("H100", 989.4),
                        ("A100", 312.0), ("L40S", 362.1), ("L4", 121.0)):
        if key in name:
            return tflops
    return None


def gemm_bf16_tflops() -> float:
    """This device's measured bf16 matrix-product rate (8192³), the ceiling actually reachable."""
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    return 2 * 8192**3 / timed(lambda: a @ b, 10) / 1e12


def embedded_shape() -> albert.AlbertConfig:
    """The shape recipes/albert-small-en/pretrain-gpu.yaml trains the embedded model in."""
    import yaml

    recipe = yaml.safe_load((ROOT / "recipes" / "albert-small-en" / "pretrain-gpu.yaml").read_text())
    return albert.AlbertConfig.from_preset(recipe["model"], **recipe.get("model_overrides", {}))


def training(size: str, B: int, T: int, repeats: int, peak: float | None, gemm: float) -> dict:
    cfg = embedded_shape() if size == "embedded" else albert.AlbertConfig.from_preset(cfg_name(size))
    name = (f"embedded shape (H {cfg.hidden_size} × {cfg.num_hidden_layers} passes)" if size == "embedded"
            else cfg_name(size))
    row: dict[str, Any] = {"model": name, "batch": B, "seq": T, "tokens_per_s": {}, "peak_mb": {},
                           "model_tflops": {}, "mfu": {}, "fraction_of_measured_gemm": {}}
    for contender in TRAINING:
        tps, mb, rate = training_one(cfg, contender, B, T, repeats)
        row["tokens_per_s"][contender], row["peak_mb"][contender] = tps, mb
        row["model_tflops"][contender] = round(rate, 1)
        row["mfu"][contender] = round(rate / peak, 3) if peak else None
        row["fraction_of_measured_gemm"][contender] = round(rate / gemm, 3)
    row["ours_vs_transformers_bf16"] = round(row["tokens_per_s"]["ours_bf16_packed_compiled"]
                                             / row["tokens_per_s"]["transformers_bf16"], 2)
    return row


def cfg_name(size: str) -> str:
    return size if size.startswith("albert-") else f"albert-{size}-v2"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", nargs="+", default=["base", "large", "xxlarge"])
    ap.add_argument("--batch", type=int, default=32, help="inference batch")
    ap.add_argument("--train-sizes", nargs="+", default=["base", "embedded"],
                    help="training-step MFU: albert-base-v2 and the embedded model's shape (its GPU recipe's)")
    ap.add_argument("--train-batch", type=int, default=256, help="training micro-batch (sequences of 128)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak, for MFU")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu_check.json"))
    a = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device")
    import transformers

    result: dict[str, Any] = {"benchmark": "gpu_check", "device": torch.cuda.get_device_name(),
                              "torch": torch.__version__, "transformers": transformers.__version__}
    peak = a.peak_tflops or peak_bf16_tflops(result["device"])
    result["peak_bf16_tflops"] = peak
    result["measured_gemm_bf16_tflops"] = round(gemm_bf16_tflops(), 1)
    result["targets"] = {"albert-base-v2 mfu": 0.35, "embedded mfu": 0.20}
    result["correctness"] = correctness()
    print(json.dumps(result["correctness"]), flush=True)
    result["training"] = []
    for size in a.train_sizes:  # first: the MFU targets
        result["training"].append(training(size, a.train_batch, 128, a.repeats, peak,
                                           result["measured_gemm_bf16_tflops"]))
        print(json.dumps(result["training"][-1]), flush=True)
    result["inference"] = []
    for size in a.sizes:
        result["inference"].append(inference(size, a.batch, 128, a.repeats))
        print(json.dumps(result["inference"][-1]), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
