"""Forward throughput of our AlbertModel vs transformers' on the same weights (fp32, this CPU).

    python bench/model_forward.py [--sizes base large] [--shapes 8x128 1x128] [--repeats 5]

Random weights in transformers' AlbertModel are saved and loaded into ours, so both run the same
numbers; the two are timed alternately, and medians (and their ratio) go to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

import albert
from albert.runtime.kernels import cpu_description
from common import transformers_config

ROOT = Path(__file__).resolve().parents[1]


def timed(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> float:
    t = time.perf_counter()
    model(ids, mask)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", nargs="+", default=["base", "large"])
    ap.add_argument("--shapes", nargs="+", default=["8x128", "1x128"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "model_forward.json"))
    a = ap.parse_args()
    import transformers

    torch.manual_seed(0)
    rows = []
    for size in a.sizes:
        name = f"albert-{size}-v2"
        theirs = transformers.AlbertModel(transformers_config(albert.AlbertConfig.from_preset(name))).eval()
        with tempfile.TemporaryDirectory() as d:
            theirs.save_pretrained(d)
            ours = albert.AlbertModel.from_pretrained(d).eval()
        for shape in a.shapes:
            B, T = map(int, shape.split("x"))
            ids = torch.randint(5, 30000, (B, T))
            mask = torch.ones(B, T, dtype=torch.long)
            with torch.inference_mode():
                diff = (ours(ids, mask).last_hidden_state - theirs(ids, mask).last_hidden_state).abs().max().item()
                ours(ids, mask), theirs(ids, mask)  # warm-up
                t_ours, t_theirs = [], []
                for _ in range(a.repeats):  # alternate so that machine noise hits both alike
                    t_ours.append(timed(ours, ids, mask))
                    t_theirs.append(timed(theirs, ids, mask))
            m_ours, m_theirs = statistics.median(t_ours), statistics.median(t_theirs)
            row = {"model": name, "batch": B, "seq": T, "dtype": "fp32",
                   "ours_tokens_per_s": round(B * T / m_ours, 1),
                   "transformers_tokens_per_s": round(B * T / m_theirs, 1),
                   "ours_ms": round(m_ours * 1000, 2), "transformers_ms": round(m_theirs * 1000, 2),
                   "speedup": round(m_theirs / m_ours, 3), "max_abs_diff": diff}
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"benchmark": "model_forward", "threads": torch.get_num_threads(), "torch": torch.__version__,
              "transformers": transformers.__version__, "machine": cpu_description(), "repeats": a.repeats,
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "rows": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
