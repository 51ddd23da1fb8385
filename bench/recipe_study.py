"""A recipe study at equal compute: one small ALBERT, one FLOP budget, one held-out evaluation, many recipes.

    python bench/recipe_study.py --data DIR [--budget-tflop 30] [--variants base mask25 ...]
                                 [--runs runs/recipe-study] [--out bench/results/recipe_study.json]

DIR is made by `albert data prepare` (the study used ../shared/data/corpus.txt.xz with the embedded model's
vocabulary). Every variant trains the same shape (unless the variant is a shape) from the same seed until it has
spent the budget in model FLOPs (albert.modeling.config.forward_flops, ×3 for a training step): its number of steps is
worked out beforehand by running its data pipeline (no model) over its first steps, because padding, packing,
the masking rate (more MLM-head rows) and a batch ramp change what a step costs. Every variant is scored by the
same held-out evaluation: the run's eval split masked 15% with single tokens (albert.train.pretrain.EVAL_MASKING),
MLM loss and accuracy, and SOP accuracy. Results are written after each variant, so a long study can be
followed and resumed (variants already in the JSON are skipped; --again reruns them).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from albert.runtime.kernels import cpu_description

# The study's base recipe: the paper's choices (15% n-gram masking up to 3, SOP weight 1, LAMB, linear decay
# after a 10% warm-up) on a model small enough for one CPU core. The learning rate is not the paper's 0.00176 (for
# batch 4,096 over 125,000 steps): at batch 64 over a few hundred steps that rate left the first study (H 256)
# predicting the commonest token after 30 TFLOP; 0.005 is the centre of the rates tried here.
BASE: dict[str, Any] = {
    "model": "albert-small",
    "model_overrides": {"vocab_size": 16000, "hidden_size": 128, "num_attention_heads": 2, "intermediate_size": 512,
                        "num_hidden_layers": 6, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
    "max_seq_length": 128, "short_seq_prob": 0.1, "masked_lm_prob": 0.15, "max_predictions_per_seq": 20,
    "max_ngram": 3, "sop_weight": 1.0, "batch_size": 64, "micro_batch_size": 16, "optimizer": "lamb",
    "learning_rate": 0.005, "warmup_fraction": 0.1, "decay": "linear", "weight_decay": 0.01,
    "precision": "auto", "num_threads": 1, "seed": 0, "eval_examples": 1000, "save_every": 0, "progress": False,
    "log_every": 10,
}
RAMP_STEPS = 60

VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "mask25": {"masked_lm_prob": 0.25, "max_predictions_per_seq": 32},
    "mask40": {"masked_lm_prob": 0.40, "max_predictions_per_seq": 52},
    "single_token": {"max_ngram": 1},
    "sop_0.5": {"sop_weight": 0.5},
    "sop_0": {"sop_weight": 0.0},
    "lr_x2": {"learning_rate": 0.01},
    "lr_half": {"learning_rate": 0.0025},
    "one_cycle": {"decay": "one_cycle", "warmup_fraction": 0.3},
    "batch_ramp": {"batch_ramp_steps": RAMP_STEPS, "batch_ramp_from": 0.25},
    "packing": {"packing": True},
    "wide_3_passes": {"model_overrides": {"hidden_size": 192, "num_attention_heads": 3, "intermediate_size": 768,
                                          "num_hidden_layers": 3}},
    "deep_12_passes": {"model_overrides": {"hidden_size": 96, "num_attention_heads": 2, "intermediate_size": 384,
                                           "num_hidden_layers": 12}},
}


def settings_of(name: str, extra: dict[str, Any], data: str, run_dir: Path) -> dict[str, Any]:
    s = json.loads(json.dumps(BASE))
    for k, v in extra.items():
        if k == "model_overrides":
            s[k].update(v)
        else:
            s[k] = v
    s.update(data=data, run_dir=str(run_dir / name))
    return s


def step_flops(raw: dict[str, Any], probe_steps: int) -> list[float]:
    """Model FLOPs of the first `probe_steps` training steps of this recipe, from its own data pipeline."""
    from albert.tokenization.tokenizer import AlbertTokenizer
    from albert.train.pretrain import PretrainTask, build_config
    from albert.train.settings import PretrainSettings

    settings = PretrainSettings(**{**raw, "max_steps": max(probe_steps, 1)})
    tokenizer = AlbertTokenizer.from_pretrained(Path(settings.data) / "tokenizer")
    config = build_config(settings, tokenizer.vocab_size)
    task = PretrainTask(settings, tokenizer, config)
    micro = settings.micro_batch_size or settings.batch_size
    try:
        return [sum(task.batch_flops(b) for b in task.step_batches(step, 0, 1, micro)) for step in range(probe_steps)]
    finally:
        task.close()


def steps_for_budget(raw: dict[str, Any], budget: float) -> tuple[int, float]:
    """(steps, their FLOPs): a ramp's smaller first steps counted one by one, the rest at the mean of 40 more."""
    ramp = int(raw.get("batch_ramp_steps", 0))
    probe = step_flops(raw, ramp + 40)
    head, full = probe[:ramp], sum(probe[ramp:]) / len(probe[ramp:])
    steps = ramp + max(1, math.ceil((budget - sum(head)) / full))
    return steps, sum(head) + (steps - ramp) * full


def run_variant(name: str, raw: dict[str, Any], budget: float) -> dict[str, Any]:
    steps, planned = steps_for_budget(raw, budget)
    settings = {**raw, "max_steps": steps, "eval_every": math.ceil(steps / 4)}
    run_dir = Path(settings["run_dir"])
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    config_file = run_dir.parent / f"{name}.yaml"
    config_file.write_text(yaml.safe_dump(settings, sort_keys=False))
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    t = time.time()
    subprocess.run([sys.executable, "-m", "albert", "pretrain", "--config", str(config_file)], check=True,
                   stdout=subprocess.DEVNULL)
    seconds = time.time() - t
    from albert.train.plot import read_records

    records = read_records(run_dir / "metrics.jsonl")
    train = [r for r in records if r.get("kind") != "eval"]
    evals = [r for r in records if r.get("kind") == "eval"]
    final = evals[-1]
    return {
        "name": name, "changes": VARIANTS.get(name, {}), "steps": steps, "planned_tflop": round(planned / 1e12, 2),
        "spent_tflop": round(sum(r["gflop"] for r in train) / 1e3, 2),
        "train_tokens": int(sum(r["tokens"] for r in train)), "positions": int(sum(r["positions"] for r in train)),
        "sequences": int(sum(r["sequences"] for r in train)), "seconds": round(seconds, 1),
        "eval_mlm_loss": final["eval_mlm_loss"], "eval_mlm_acc": final["eval_mlm_acc"],
        "eval_sop_acc": final["eval_sop_acc"],
        "curve": {"step": [r["step"] for r in train], "mlm_loss": [r["mlm_loss"] for r in train]},
        "eval_curve": [{k: r[k] for k in ("step", "eval_mlm_loss", "eval_mlm_acc", "eval_sop_acc")} for r in evals],
    }


def plot(results: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 5))
    for i, r in enumerate(results):
        spent, color = r["spent_tflop"] / r["steps"], plt.get_cmap("tab20")(i % 20)
        a.plot([s * spent for s in r["curve"]["step"]], _smooth(r["curve"]["mlm_loss"]), label=r["name"], lw=1,
               color=color)
        b.plot([e["step"] * spent for e in r["eval_curve"]], [e["eval_mlm_acc"] for e in r["eval_curve"]], marker="o",
               label=r["name"], lw=1, color=color, ls="-" if i < 10 else "--")
    a.set(xlabel="TFLOP spent", ylabel="training MLM loss (own masking, smoothed)", ylim=(None, 9))
    b.set(xlabel="TFLOP spent", ylabel="held-out MLM accuracy (15% single tokens)")
    b.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(results: list[dict[str, Any]]) -> str:
    """The results as a markdown table, best held-out MLM accuracy first, with the difference to the base."""
    base = next((r for r in results if r["name"] == "base"), results[0])
    lines = ["| variant | change | steps | TFLOP | tokens (M) | held-out MLM acc | Δ base | MLM loss | SOP acc |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: -r["eval_mlm_acc"]):
        change = ", ".join(f"{k} {v}" for k, v in r["changes"].items()) or "—"
        delta = (r["eval_mlm_acc"] - base["eval_mlm_acc"]) * 100
        lines.append(f"| {r['name']} | {change} | {r['steps']} | {r['spent_tflop']:.1f} "
                     f"| {r['train_tokens'] / 1e6:.2f} | {r['eval_mlm_acc']:.1%} | {delta:+.1f} "
                     f"| {r['eval_mlm_loss']:.3f} | {r['eval_sop_acc']:.1%} |")
    return "\n".join(lines)


def _smooth(values: list[float], k: int = 10) -> list[float]:
    return [sum(values[max(0, i - k + 1):i + 1]) / len(values[max(0, i - k + 1):i + 1]) for i in range(len(values))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="")
    ap.add_argument("--budget-tflop", type=float, default=30.0)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--set", nargs="*", default=[], metavar="NAME=JSON",
                    help="an extra variant, e.g. winner='{\"masked_lm_prob\": 0.25}'")
    ap.add_argument("--runs", default="runs/recipe-study")
    ap.add_argument("--out", default="bench/results/recipe_study.json")
    ap.add_argument("--again", action="store_true")
    ap.add_argument("--table", action="store_true", help="print the results in --out as a markdown table")
    a = ap.parse_args()
    if a.table:
        print(table(json.loads(Path(a.out).read_text())["variants"]))
        return
    for item in a.set:
        name, _, spec = item.partition("=")
        VARIANTS[name] = json.loads(spec)
        a.variants.append(name)
    if not a.data:
        ap.error("--data is required")
    out = Path(a.out)
    doc = json.loads(out.read_text()) if out.is_file() else {}
    done = {r["name"]: r for r in doc.get("variants", [])}
    budget = a.budget_tflop * 1e12
    for name in a.variants:
        if name in done and not a.again:
            continue
        raw = settings_of(name, VARIANTS[name], a.data, Path(a.runs))
        print(f"{name}: {VARIANTS[name]}", flush=True)
        done[name] = run_variant(name, raw, budget)
        r = done[name]
        print(f"  {r['steps']} steps, {r['spent_tflop']} TFLOP, {r['seconds']} s: held-out MLM "
              f"{r['eval_mlm_acc']:.4f} (loss {r['eval_mlm_loss']:.3f}), SOP {r['eval_sop_acc']:.3f}", flush=True)
        doc = {"what": "recipe study at equal compute (model FLOPs), bench/recipe_study.py",
               "machine": cpu_description(), "torch": torch.__version__, "budget_tflop": a.budget_tflop,
               "base": BASE, "data": a.data,
               "evaluation": "held-out split of the data, 15% single-token masking, MLM loss/accuracy, SOP accuracy",
               "variants": list(done.values())}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1) + "\n")
        plot(list(done.values()), out.with_suffix(".png"))


if __name__ == "__main__":
    main()
