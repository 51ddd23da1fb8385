"""`albert embed --file` on many lines: peak memory against a short file's, and a killed job resumed.

    python bench/file_memory.py [--lines 1000 200000] [--resume_lines N] [--out bench/results/file_memory.json]

Input: the corpus's first non-empty lines (paragraphs), one per line. Each run is a process of its own writing
`--out FILE`; its peak RSS is its VmHWM, read just before it exits. Then the longest file (or `--resume_lines`,
one of `--lines`: a kill and a resume cost a run and a half) again, killed (SIGKILL) once half its answers are
written, and resumed with `--resume`: the resumed file must equal the uninterrupted one line for line. The issue's
target: the longest file's peak within 1.2x of the shortest's. Memory, not speed: the seconds are those of
whatever else the machine was doing.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "corpus.txt.xz"
# the CLI, printing its VmHWM on stderr as it exits
CLI = ("import sys, atexit, pathlib\n"
       "atexit.register(lambda: print('HWM', [l for l in pathlib.Path('/proc/self/status').read_text()"
       ".splitlines() if l.startswith('VmHWM')][0].split()[1], file=sys.stderr))\n"
       "sys.argv = ['albert'] + sys.argv[1:]\n"
       "from albert.cli import main\nraise SystemExit(main())\n")


def corpus_lines(n: int, out: Path) -> Path:
    with lzma.open(CORPUS, "rt", encoding="utf-8") as f, out.open("w", encoding="utf-8") as w:
        written = 0
        for line in f:
            if line.strip():
                w.write(line.strip() + "\n")
                written += 1
                if written == n:
                    break
    return out


def embed(lines: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CLI, "embed", "--file", str(lines), "--out", str(out), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finished(proc: subprocess.Popen, started: float) -> dict[str, float]:
    _, err = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(err)
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(int(re.search(r"HWM (\d+)", err).group(1)) / 1024)}


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lines", type=int, nargs="+", default=[1000, 200_000])
    p.add_argument("--resume_lines", type=int, default=0, help="the file killed and resumed (default the longest)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "file_memory.json"))
    args = p.parse_args()
    if args.resume_lines and args.resume_lines not in args.lines:
        raise SystemExit("--resume_lines must be one of --lines (its uninterrupted output is the reference)")
    from albert.runtime.kernels import cpu_description

    report: dict[str, object] = {"cpu": cpu_description(), "threads": os.cpu_count(), "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.lines:
            lines = corpus_lines(n, Path(tmp) / f"lines{n}.txt")
            report["runs"][n] = finished(embed(lines, Path(tmp) / f"full{n}.jsonl"), time.perf_counter())  # type: ignore[index]
            print(n, report["runs"][n], flush=True)  # type: ignore[index]
        n = args.resume_lines or max(args.lines)
        lines, cut = Path(tmp) / f"lines{n}.txt", Path(tmp) / "resumed.jsonl"
        proc = embed(lines, cut)
        while proc.poll() is None and (not cut.exists() or count_lines(cut) < n // 2):
            time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = count_lines(cut)
        finished(embed(lines, cut, "--resume"), time.perf_counter())
        same = cut.read_bytes() == (Path(tmp) / f"full{n}.jsonl").read_bytes()
        report["resume"] = {"lines": n, "killed_after_lines": killed_at, "equal_to_uninterrupted": same}
        shortest, longest = report["runs"][min(args.lines)], report["runs"][max(args.lines)]  # type: ignore[index]
        report["peak_ratio"] = round(longest["peak_rss_mb"] / shortest["peak_rss_mb"], 3)
    print(json.dumps(report, indent=1))
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
