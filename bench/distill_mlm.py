"""Masked-LM distillation, teacher against student, in one run on one machine: held-out MLM and SOP accuracy (all
held-out sequences of a prepared data directory, 15% single-token masks: pretraining's evaluation) and forward
speed (tokens/s at batch × length, fp32 and int8, alternating rounds, medians).

    python bench/distill_mlm.py --data PREPARED_DIR --teacher albert-small-en --student NAME=DIR ... [--out FILE]

A student is what `albert distill --kind masked-lm` made (e.g. the teacher with half the passes), or its start.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from albert.modeling.heads import AlbertForPreTraining
from albert.runtime.kernels import cpu_description
from albert.tokenization.tokenizer import AlbertTokenizer
from albert.train.pretrain import PretrainTask
from albert.train.settings import PretrainSettings
from common import forward_speeds


def held_out(model: AlbertForPreTraining, data: str, tokenizer: AlbertTokenizer, examples: int) -> dict[str, float]:
    settings = PretrainSettings(data=data, run_dir="/nonexistent", max_seq_length=128, eval_examples=examples)
    return PretrainTask(settings, tokenizer, model.config).evaluate(model, torch.device("cpu"), None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--teacher", default="albert-small-en")
    p.add_argument("--student", action="append", required=True, help="a student directory; NAME=DIR names it "
                   "(repeatable: e.g. the start before distillation beside the distilled one)")
    p.add_argument("--eval-examples", type=int, default=100_000, help="held-out sequences at most (default: all)")
    p.add_argument("--shape", default="8x128")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--out", default="bench/results/distill_mlm.json")
    a = p.parse_args()
    tokenizer = AlbertTokenizer.from_pretrained(a.teacher)
    models = {"teacher": AlbertForPreTraining.from_pretrained(a.teacher).eval()}
    for i, spec in enumerate(a.student):
        name, _, where = spec.rpartition("=")
        models[name or f"student{i}"] = AlbertForPreTraining.from_pretrained(where).eval()
    results: dict[str, dict[str, float]] = {}
    for name, model in models.items():
        with torch.no_grad():
            results[name] = {"passes": model.config.num_hidden_layers, "parameters": model.num_parameters(),
                             **held_out(model, a.data, tokenizer, a.eval_examples)}
    for name, speeds in forward_speeds(models, a.shape, a.rounds).items():
        results[name].update(speeds)
    t = results["teacher"]
    summary = {name: {"mlm_acc_ratio": round(s["eval_mlm_acc"] / t["eval_mlm_acc"], 4),
                      "speed_fp32": round(s["fp32_tokens_per_s"] / t["fp32_tokens_per_s"], 3),
                      "speed_int8": round(s["int8_tokens_per_s"] / t["int8_tokens_per_s"], 3)}
               for name, s in results.items() if name != "teacher"}
    out = {"cpu": cpu_description(), "threads": torch.get_num_threads(), "data": a.data, "teacher": a.teacher,
           "student": a.student, "shape": a.shape, "rounds": a.rounds, "results": results,
           "student_vs_teacher": summary}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
