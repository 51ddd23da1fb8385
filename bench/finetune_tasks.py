"""Fine-tune a model on the six labelled tasks and record dev scores beside the simple baselines.

    python bench/finetune_tasks.py [--model albert-small-en] [--tasks ../shared/data/tasks] [--scale 1.0]
                                   [--only TASK ...] [--work runs/finetune]

Each run goes through `albert finetune` (the one training loop) with a fixed number of steps chosen to fit
a few CPU minutes here; `--scale` multiplies them. Results (dev scores, wall time, steps, settings) go to
bench/results/finetune_tasks.json, next to bench/results/task_baselines.json (bench/task_baselines.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from albert.runtime.kernels import cpu_description, cpu_has_bf16

ROOT = Path(__file__).resolve().parents[1]

# task directory[+variant] → (albert finetune --task, settings). Precision: auto (bf16 where the CPU has bf16
# units).
RUNS: dict[str, tuple[str, dict[str, Any]]] = {
    "fine_foods_sentiment": ("classification", dict(max_seq_length=128, batch_size=32, learning_rate=5e-5,
                                                    max_steps=200)),
    "bible_paraphrase": ("classification", dict(max_seq_length=128, batch_size=32, learning_rate=5e-5,
                                                max_steps=200)),
    "wordnet_supersense": ("classification", dict(max_seq_length=64, batch_size=32, learning_rate=5e-5,
                                                  max_steps=300)),
    "wordnet_qa": ("qa", dict(max_seq_length=128, batch_size=32, learning_rate=5e-5, max_steps=200)),
    "wordnet_cloze_mc": ("multiple-choice", dict(max_seq_length=64, batch_size=16, learning_rate=3e-5,
                                                 max_steps=200)),
    "wordnet_sst_tagging": ("token-classification", dict(max_seq_length=64, batch_size=32, learning_rate=5e-5,
                                                         max_steps=200)),
    # the same QA data through the original ALBERT's SQuAD 2.0 head instead of the span head
    "wordnet_qa+answerability_head": ("qa", dict(max_seq_length=128, batch_size=32, learning_rate=5e-5, max_steps=200,
                                                 answerability_head=True)),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="albert-small-en")
    ap.add_argument("--tasks", default=str(ROOT.parent / "shared" / "data" / "tasks"))
    ap.add_argument("--work", default=str(ROOT / "runs" / "finetune"))
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every run's steps")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "finetune_tasks.json"))
    a = ap.parse_args()
    out_path = Path(a.out)
    results: dict[str, Any] = json.loads(out_path.read_text()) if out_path.is_file() else {}
    baselines_path = ROOT / "bench" / "results" / "task_baselines.json"
    baselines = json.loads(baselines_path.read_text()) if baselines_path.is_file() else {}
    for name, (task, settings) in RUNS.items():
        if a.only and name not in a.only:
            continue
        settings = {**settings, "max_steps": max(1, round(settings["max_steps"] * a.scale))}
        out = Path(a.work) / name
        cmd = [sys.executable, "-m", "albert.cli", "finetune", "--task", task, "--model", a.model,
               "--train", str(Path(a.tasks) / name.split("+")[0] / "train.jsonl.xz"),
               "--dev", str(Path(a.tasks) / name.split("+")[0] / "dev.jsonl"),
               "--out", str(out), "--progress", "false", "--save_every", str(settings["max_steps"]),
               "--eval_every", str(settings["max_steps"])]
        for key, value in settings.items():
            cmd += [f"--{key}", str(value)]
        subprocess.run(["rm", "-rf", str(out)], check=True)
        t = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - t
        if done.returncode != 0:
            print(name, "failed:", done.stderr.strip().splitlines()[-1:], file=sys.stderr)
            continue
        dev = json.loads((out / "dev_results.json").read_text())
        results[name] = {"task": task, "model": a.model, "settings": settings, "dev": dev,
                         "wall_seconds": round(seconds), "machine": cpu_description(),
                         "precision": "bf16" if cpu_has_bf16() else "fp32",
                         "baseline": baselines.get(name.split("+")[0], {}).get("dev"),
                         "baseline_method": baselines.get(name.split("+")[0], {}).get("baseline")}
        print(name, {k: round(v, 4) for k, v in dev.items()}, f"{seconds:.0f} s", "baseline:",
              results[name]["baseline"], flush=True)
        out_path.write_text(json.dumps(results, indent=1) + "\n")
    print("wrote", out_path)


if __name__ == "__main__":
    main()
