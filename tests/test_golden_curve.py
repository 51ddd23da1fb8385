"""The default recipe's golden curve: a short fixed-seed run of recipes/pretrain-small.yaml's recipe (its masking,
SOP weight, packing, schedule and optimizer) on a tiny model and the committed text gives the committed losses.

A change that moves the curve (the masking, the packing, the loss, the optimizer, the schedule) fails here; if it
was meant, rewrite the curve with `ALBERT_WRITE_GOLDEN=1 pytest tests/test_golden_curve.py` and say why in the
commit. The tokenizer is the embedded model's (a committed file), so the ids do not depend on a training run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "fixtures" / "golden_curve.json"
# What the recipe decides; the rest (model, data, length, steps) is the test's
KNOBS = ("masked_lm_prob", "max_predictions_per_seq", "max_ngram", "sop_weight", "packing", "short_seq_prob",
         "optimizer", "learning_rate", "warmup_fraction", "decay", "decay_power", "weight_decay", "beta1", "beta2",
         "eps", "max_grad_norm", "batch_ramp_from")
STEPS = 40


def golden_run(tmp: Path) -> dict:
    from albert.data.shards import prepare_data
    from albert.train.pretrain import pretrain
    from albert.train.settings import PretrainSettings

    recipe = yaml.safe_load((ROOT / "recipes" / "pretrain-small.yaml").read_text())
    knobs = {k: recipe[k] for k in KNOBS if k in recipe}
    if recipe.get("batch_ramp_steps"):  # the ramp spans the same share of the run
        knobs["batch_ramp_steps"] = max(1, round(recipe["batch_ramp_steps"] / recipe["max_steps"] * STEPS))
    length = 64
    knobs["max_predictions_per_seq"] = max(1, round(knobs.get("max_predictions_per_seq", 20) * length / 128))
    prepare_data([Path(__file__).parent / "fixtures" / "public_domain.txt"], ROOT / "src/albert/models/albert-small-en",
                 tmp / "data", eval_fraction=0.1, workers=1, progress=False)
    settings = PretrainSettings(data=str(tmp / "data"), run_dir=str(tmp / "run"), model="albert-tiny",
                                model_overrides={"vocab_size": 16000}, max_seq_length=length, batch_size=16,
                                micro_batch_size=4, max_steps=STEPS, precision="fp32", num_threads=1, seed=0,
                                eval_every=STEPS // 2, eval_examples=200, save_every=0, progress=False, **knobs)
    pretrain(settings)
    records = [json.loads(line) for line in (tmp / "run" / "metrics.jsonl").read_text().splitlines()]
    return {"recipe": knobs, "steps": STEPS,
            "train": [{k: r[k] for k in ("step", "mlm_loss", "sop_loss", "tokens")} for r in records
                      if r.get("kind") != "eval"],
            "eval": [{k: r[k] for k in ("step", "eval_mlm_loss", "eval_mlm_acc", "eval_sop_acc")} for r in records
                     if r.get("kind") == "eval"]}


def test_the_default_recipe_follows_its_golden_curve(tmp_path: Path) -> None:
    run = golden_run(tmp_path)
    if os.environ.get("ALBERT_WRITE_GOLDEN"):
        GOLDEN.write_text(json.dumps(run, indent=1) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert run["recipe"] == golden["recipe"], "the recipe changed: rewrite the golden curve (see the module's doc)"
    assert [r["tokens"] for r in run["train"]] == [r["tokens"] for r in golden["train"]]  # the same data, exactly
    # every step and evaluation of the golden run, no fewer and no more
    assert [r["step"] for r in run["train"]] == [r["step"] for r in golden["train"]] == list(range(1, STEPS + 1))
    assert [r["step"] for r in run["eval"]] == [r["step"] for r in golden["eval"]] and len(golden["eval"]) >= 2
    # losses to 0.2%: fp32 on one thread, but CPUs' kernels (AVX2, AVX-512) round differently and 40 steps add up
    for ours, theirs in zip(run["train"] + run["eval"], golden["train"] + golden["eval"], strict=True):
        for k, v in theirs.items():
            assert ours[k] == pytest.approx(v, rel=2e-3, abs=1e-4), (ours["step"], k)
    first, last = run["train"][0]["mlm_loss"], run["train"][-1]["mlm_loss"]
    assert last < first - 0.15  # and it learns
