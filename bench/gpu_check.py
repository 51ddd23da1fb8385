"""On a CUDA GPU: correctness against the CPU and against transformers, then throughput and peak GPU memory.

    python bench/gpu_check.py [--sizes base large xxlarge] [--out bench/results/gpu_check.json]

Correctness (fp32 with TF32 off, so CPU and GPU should agree to rounding):
- the embedded model's masked-LM logits, CPU vs GPU, and the fill-mask pipeline's top-1 on the GPU (bf16, its
  default there) against the CPU's fp32 top-1 over the masked words of the test fixture;
- albert-base-v2 (random weights): our GPU output vs transformers' on the GPU with the same weights;
- one pretraining step (loss and gradient norm, dropout off) on the GPU vs the CPU.
Throughput, albert-{base,large,xxlarge}-v2 with random weights, batch 32×128: inference tokens/s of ours (bf16 and
fp32 weights) vs transformers (fp32, bf16; SDPA), and one training step (MLM + SOP) of ours (bf16 autocast, LAMB,
MLM head on the masked positions) vs transformers' AlbertForPreTraining (bf16 autocast, AdamW). Medians of timed
repeats after warm-ups, synchronised; peak GPU memory is torch's max_memory_allocated for that contender alone.
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

import torch

import albert
from albert.train.optim import build_optimizer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
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
        # the pipeline keeps fp32 parameters and runs the encoder on bf16 copies (albert.runtime.freeze_bf16)
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
    hf_cfg = transformers.AlbertConfig(**cfg.to_dict())
    hf_cfg._attn_implementation = "sdpa"
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
    cfg = albert.AlbertConfig.from_preset(f"albert-{size}-v2")
    ids = torch.randint(5, cfg.vocab_size, (B, T), device="cuda")
    row: dict[str, Any] = {"model": f"albert-{size}-v2", "batch": B, "seq": T, "tokens_per_s": {}, "peak_mb": {}}
    for name in ("ours_bf16", "ours_fp32", "transformers_fp32", "transformers_bf16"):
        row["tokens_per_s"][name], row["peak_mb"][name] = inference_one(cfg, name, ids, repeats)
    tps = row["tokens_per_s"]
    row["ours_bf16_vs_transformers_fp32"] = round(tps["ours_bf16"] / tps["transformers_fp32"], 2)
    row["ours_bf16_vs_transformers_bf16"] = round(tps["ours_bf16"] / tps["transformers_bf16"], 2)
    return row


def training_one(cfg: albert.AlbertConfig, name: str, batch: dict[str, torch.Tensor], repeats: int) -> tuple[int, int]:
    model = build(cfg, name, pretraining=True).cuda().train()
    if name.startswith("ours"):  # LAMB, the MLM head on the masked positions only
        opt = build_optimizer(model, "lamb", 1e-4, 0.01, (0.9, 0.999), 1e-6)
        inputs = {"mlm_positions": batch["positions"], "labels": batch["labels_at"]}
    else:  # AdamW, MLM logits everywhere
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
        inputs = {"labels": batch["full_labels"]}
    inputs |= {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    inputs["sentence_order_label"] = batch["sop"]

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return measure(step, batch["input_ids"].numel(), repeats)


def training(size: str, B: int, T: int, repeats: int) -> dict:
    cfg = albert.AlbertConfig.from_preset(f"albert-{size}-v2")
    batch = {k: v.cuda() for k, v in make_batch(B, T, cfg.vocab_size, 20).items()}
    row: dict[str, Any] = {"model": f"albert-{size}-v2", "batch": B, "seq": T, "tokens_per_s": {}, "peak_mb": {}}
    for name in ("ours_bf16", "transformers_bf16"):
        row["tokens_per_s"][name], row["peak_mb"][name] = training_one(cfg, name, batch, repeats)
    row["ours_vs_transformers_bf16"] = round(row["tokens_per_s"]["ours_bf16"]
                                             / row["tokens_per_s"]["transformers_bf16"], 2)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", nargs="+", default=["base", "large", "xxlarge"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu_check.json"))
    a = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device")
    import transformers

    result: dict[str, Any] = {"benchmark": "gpu_check", "device": torch.cuda.get_device_name(),
                              "torch": torch.__version__, "transformers": transformers.__version__}
    result["correctness"] = correctness()
    print(json.dumps(result["correctness"]), flush=True)
    result["inference"] = []
    result["training"] = []
    for size in a.sizes:
        result["inference"].append(inference(size, a.batch, 128, a.repeats))
        print(json.dumps(result["inference"][-1]), flush=True)
        result["training"].append(training(size, a.batch, 128, a.repeats))
        print(json.dumps(result["training"][-1]), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
