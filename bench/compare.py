"""A change's speed against its parent's, in one run: the step before resolving any change to the model, the
runtime or the pipelines (CONTRIBUTING.md).

    python bench/compare.py                       # the working tree against HEAD (uncommitted changes)
    python bench/compare.py --base HEAD~1         # HEAD against its parent (a commit's own change)
    python bench/compare.py --base main --head my-branch --shapes 1x16,1x128,8x128 --precisions fp32,int8

Each side runs in a process of its own, from its own checkout (a git worktree of the revision; the working tree for
"."), with the same worker code, and only through albert's public API (`albert.AlbertConfig`, `albert.AlbertModel`,
`albert.pipeline`), so the comparison keeps working across a re-layout of the package. Both load the same model:
albert-base-v2's shape with random weights by default (seeded; `--model DIR` for a model directory), the
feature-extraction pipeline at each precision, inputs of exactly T tokens. The rounds alternate the two sides (the
order flips each round), each side timing --runs calls after one warm-up; the medians' ratio head/base is printed
with the spread of the per-round ratios (below 1: the change is faster). JSON under bench/results/.
Timing never asserts in the suite: this is a bench, run alone on a quiet CPU (stop background jobs first).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The worker: the same text for both sides, written to a file and run with each side's src/ first on sys.path.
# It reads one request per line ("B T precision runs") and answers one JSON line: the calls' seconds.
WORKER = r'''
import json, sys, time
import torch
import albert

model_dir, seed = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(int(sys.argv[3]))
pipes = {}
tok = None
print(json.dumps({"ready": albert.__version__}), flush=True)
for line in sys.stdin:
    B, T, precision, runs = line.split()
    B, T, runs = int(B), int(T), int(runs)
    if precision not in pipes:
        pipes[precision] = albert.pipeline("feature-extraction", model=model_dir, precision=precision)
    pipe = pipes[precision]
    words = ["sea"] * max(1, T - 2)  # one piece each, and [CLS] [SEP]: T tokens
    texts = [" ".join(words)] * B
    pipe(texts)  # warm-up (and, under --compile, the compilation)
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        pipe(texts)
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"seconds": seconds}), flush=True)
'''


def checkout(rev: str, scratch: Path) -> Path:
    """The tree of `rev`: the working tree itself for ".", else a detached git worktree in `scratch`."""
    if rev == ".":
        return ROOT
    path = scratch / rev.replace("/", "_").replace("~", "-").replace("^", "-")
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(path), rev], check=True,
                   capture_output=True, text=True)
    return path


def model_directory(model: str, scratch: Path, seed: int) -> str:
    """`model`, or albert-base-v2's shape with seeded random weights saved once (read by both sides alike)."""
    if model != "albert-base-v2-random":
        return model
    import torch

    import albert

    out = scratch / "albert-base-v2-random"
    torch.manual_seed(seed)
    albert.AlbertModel(albert.AlbertConfig.from_preset("albert-base-v2")).save_pretrained(out)
    albert.AlbertTokenizer.from_pretrained("albert-small-en").save_pretrained(out)  # ("sea" is one piece)
    return str(out)


class Side:
    """One revision's worker process."""

    def __init__(self, name: str, tree: Path, worker: Path, model: str, seed: int, threads: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(tree / "src")}
        self.name, self.tree = name, tree
        self.proc = subprocess.Popen([sys.executable, str(worker), model, str(seed), str(threads)], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.version = self._read()["ready"]

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"compare: the {self.name} worker ({self.tree}) stopped; its error is above")
        return json.loads(line)

    def time(self, B: int, T: int, precision: str, runs: int) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{B} {T} {precision} {runs}\n")
        self.proc.stdin.flush()
        return statistics.median(self._read()["seconds"])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(60)


def cpu() -> str:
    flags = ""
    name = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and name == "unknown CPU":
            name = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            flags = line
    units = [u for u, f in (("AVX512-BF16", "avx512_bf16"), ("AMX", "amx_tile"), ("VNNI", "avx512_vnni"))
             if f in flags.split()]
    return f"{name} ({', '.join(units) or 'AVX2 only'}), {os.cpu_count()} cores"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default="HEAD", help="the revision compared against (default HEAD)")
    p.add_argument("--head", default=".", help="the revision measured ('.': the working tree, the default)")
    p.add_argument("--model", default="albert-base-v2-random", help="a model directory or packaged name")
    p.add_argument("--shapes", default="1x16,1x32,1x128,8x128", help="BxT, comma-separated")
    p.add_argument("--precisions", default="fp32,int8", help="comma-separated: fp32, bf16, int8")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--runs", type=int, default=10, help="calls timed per side per round")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON (default bench/results/compare-BASE-HEAD.json)")
    a = p.parse_args()
    shapes = [tuple(int(x) for x in s.split("x")) for s in a.shapes.split(",")]
    precisions = a.precisions.split(",")
    with tempfile.TemporaryDirectory(prefix="albert-compare-") as tmp:
        scratch = Path(tmp)
        trees = {"base": checkout(a.base, scratch), "head": checkout(a.head, scratch)}
        worker = scratch / "worker.py"
        worker.write_text(WORKER)
        model = model_directory(a.model, scratch, a.seed)
        sides = {name: Side(name, tree, worker, model, a.seed, a.threads) for name, tree in trees.items()}
        rows = []
        try:
            for precision in precisions:
                for B, T in shapes:
                    times: dict[str, list[float]] = {"base": [], "head": []}
                    for r in range(a.rounds):
                        order = ["base", "head"] if r % 2 == 0 else ["head", "base"]
                        for name in order:
                            times[name].append(sides[name].time(B, T, precision, a.runs))
                    ratios = sorted(h / b for h, b in zip(times["head"], times["base"]))
                    row = {"precision": precision, "shape": f"{B}x{T}",
                           "base_ms": round(1e3 * statistics.median(times["base"]), 3),
                           "head_ms": round(1e3 * statistics.median(times["head"]), 3),
                           "ratio": round(statistics.median(times["head"]) / statistics.median(times["base"]), 4),
                           "ratio_spread": [round(ratios[0], 4), round(ratios[-1], 4)]}
                    rows.append(row)
                    print(f"{precision:>5} {B}x{T:<5} base {row['base_ms']:9.2f} ms  head {row['head_ms']:9.2f} ms  "
                          f"head/base {row['ratio']:.3f} (rounds {row['ratio_spread'][0]:.3f}-"
                          f"{row['ratio_spread'][1]:.3f})", flush=True)
        finally:
            for side in sides.values():
                side.close()
            for tree in trees.values():
                if tree != ROOT:
                    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                                   capture_output=True)
    result = {"benchmark": "compare", "base": a.base, "head": a.head, "model": a.model, "machine": cpu(),
              "threads": a.threads, "rounds": a.rounds, "runs_per_round": a.runs, "rows": rows}
    out = Path(a.out) if a.out else ROOT / "bench" / "results" / (
        f"compare-{a.base}-{'worktree' if a.head == '.' else a.head}.json".replace("/", "_").replace("~", "-"))
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
