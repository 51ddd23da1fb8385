"""Per-pass cost of early exit's loop at batch 1: a classifier after every pass whose exit never triggers (entropy
threshold 1e-12, so every pass runs as its own step) against the plain forward, albert-base-v2's shape, random
weights, eager and under --compile; medians of 41 alternating calls. #52's target: <= 0.1 ms per pass.

    python bench/early_exit_overhead.py [int8 fp32] [--out bench/results/early_exit_overhead.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import albert
from albert.modeling.early_exit import ExitPolicy
from albert.runtime.kernels import cpu_description
from albert.runtime.policy import Runtime, prepare_for_inference

ROOT = Path(__file__).resolve().parents[1]


def medians(calls: dict[str, Callable[[], Any]], rounds: int = 41) -> dict[str, float]:
    """Milliseconds per call, median of `rounds` alternating calls, each after 20 ms idle."""
    times: dict[str, list[float]] = {k: [] for k in calls}
    with torch.inference_mode():
        for call in calls.values():
            call()
            call()
        for _ in range(rounds):
            for name, call in calls.items():
                time.sleep(0.02)
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) * 1000 for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("precisions", nargs="*", default=["int8", "fp32"])
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "early_exit_overhead.json"))
    a = p.parse_args()
    torch.manual_seed(0)
    config = dataclasses.replace(albert.AlbertConfig.from_preset("albert-base-v2"), early_exit="shared", num_labels=2)
    never = ExitPolicy(threshold=1e-12)
    out: dict[str, Any] = {"cpu": cpu_description(), "threads": torch.get_num_threads(), "rows": {}}
    for precision in a.precisions:
        for compile_ in (False, True):
            model = prepare_for_inference(albert.AlbertForSequenceClassification(config).eval(),
                                          Runtime(torch.device("cpu"), precision), compile=compile_)  # type: ignore[arg-type]
            for tokens in (16, 128):
                ids = torch.randint(5, 30000, (1, tokens))
                mask = torch.ones_like(ids)
                ms = medians({"plain": lambda: model(ids, mask),  # noqa: B023 (called within this iteration)
                              "exit": lambda: model(ids, mask, exit_policy=never)})  # noqa: B023
                key = f"{precision}{' --compile' if compile_ else ''} 1x{tokens}"
                out["rows"][key] = {"plain_ms": round(ms["plain"], 2), "exit_ms": round(ms["exit"], 2),
                                    "per_pass_ms": round((ms["exit"] - ms["plain"]) / config.num_hidden_layers, 3)}
                print(key, out["rows"][key], flush=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
