"""Task distillation, teacher against students, in one run on one machine: each fine-tuned directory's dev metrics
(`albert evaluate`, fp32) and forward speed (tokens/s at batch × length, fp32 and int8, alternating rounds,
medians).

    python bench/distill_task.py --dev DEV --teacher DIR --student NAME=DIR ... [--out FILE]

The students: what `albert distill --kind task` made, beside the same start fine-tuned on the task alone with the
same steps (the question a distillation answers: does the teacher's soft labels beat the labels alone?).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from albert.runtime.kernels import cpu_description
from albert.train.finetune import evaluate_dir, model_class, task_spec_of
from common import forward_speeds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dev", required=True, help="the task's labelled dev file")
    p.add_argument("--teacher", required=True, help="the fine-tuned teacher's directory")
    p.add_argument("--student", action="append", required=True, help="a fine-tuned student directory; NAME=DIR "
                   "names it (repeatable)")
    p.add_argument("--shape", default="32x128")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--out", default="bench/results/distill_task.json")
    a = p.parse_args()
    where = {"teacher": a.teacher}
    for i, spec in enumerate(a.student):
        name, _, directory = spec.rpartition("=")
        where[name or f"student{i}"] = directory
    results: dict[str, dict[str, float]] = {}
    models = {}
    for name, directory in where.items():
        found, spec = task_spec_of(directory)
        model = model_class(spec).from_pretrained(found).eval()
        models[name] = model
        results[name] = {"passes": model.config.num_hidden_layers, "parameters": model.num_parameters(),
                         **evaluate_dir(directory, a.dev, device="cpu", precision="fp32")}
    for name, speeds in forward_speeds(models, a.shape, a.rounds).items():
        results[name].update(speeds)
    t = results["teacher"]
    summary = {name: {"speed_fp32": round(s["fp32_tokens_per_s"] / t["fp32_tokens_per_s"], 3),
                      "speed_int8": round(s["int8_tokens_per_s"] / t["int8_tokens_per_s"], 3)}
               for name, s in results.items() if name != "teacher"}
    out = {"cpu": cpu_description(), "threads": torch.get_num_threads(), "dev": a.dev, "models": where,
           "shape": a.shape, "rounds": a.rounds, "results": results, "student_vs_teacher": summary}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
