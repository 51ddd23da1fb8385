"""A long text through `albert tag`, on the command line and in the server: peak memory, and the wait of a
one-sentence request sent while the long text is under way.

    python bench/long_text.py [--chars 3900000] [--out bench/results/long_text.json]

The text: the corpus's paragraphs joined by spaces up to `--chars` characters, one line. The model: albert-small-en
with a token-classification head (a fresh head: memory and time do not depend on its training), fp32 on a CPU
without bf16 units, else `auto`. Each measure is a process of its own:
- CLI: `albert tag --file` on one sentence, then on the long text: peak RSS (VmHWM) of each, seconds;
- server: `albert serve --task token-classification`; the long text POSTed, then, once the server has made its
  first model calls of it, one-sentence requests one after another until the long one is answered: their
  latencies (median, max), the long one's seconds, the server's peak RSS against its peak after a one-sentence
  request alone.
The issue's targets: CLI and server peak ≤ one sentence's + 200 MB plus the output; a sentence answered within 2 s.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "corpus.txt.xz"
SENTENCE = "Ishmael sailed from Nantucket with Captain Ahab in December."


def long_text(chars: int) -> str:
    parts, n = [], 0
    with lzma.open(CORPUS, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                parts.append(line.strip())
                n += len(parts[-1]) + 1
                if n >= chars:
                    break
    return " ".join(parts)[:chars]


def tag_model(out: Path) -> Path:
    import torch

    from albert.modeling.heads import AlbertForTokenClassification
    from albert.tokenization.tokenizer import AlbertTokenizer

    torch.manual_seed(0)  # the fresh head, the same in every run: the same entities, so runs compare
    model = AlbertForTokenClassification.from_pretrained("albert-small-en", num_labels=5)
    model.config.id2label = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
    model.save_pretrained(out)
    AlbertTokenizer.from_pretrained("albert-small-en").save_pretrained(out)
    return out


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cli_run(model: Path, text_file: Path, precision: str) -> dict[str, float]:
    """`albert tag --file`: seconds and peak RSS (read from /proc just before the process exits: VmHWM)."""
    out = text_file.with_suffix(".out.jsonl")
    out.unlink(missing_ok=True)
    code = ("import runpy, sys, atexit, pathlib\n"
            "atexit.register(lambda: print('HWM', [l for l in pathlib.Path('/proc/self/status').read_text()"
            ".splitlines() if l.startswith('VmHWM')][0].split()[1], file=sys.stderr))\n"
            "sys.argv = ['albert'] + sys.argv[1:]\n"
            "from albert.cli import main\nraise SystemExit(main())\n")
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, "tag", "--file", str(text_file), "--model", str(model),
                           "--precision", precision, "--out", str(out)], capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if done.returncode:
        raise SystemExit(done.stderr)
    hwm = int(re.search(r"HWM (\d+)", done.stderr).group(1)) / 1024  # type: ignore[union-attr]
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(hwm), "output_mb": round(out.stat().st_size / 1e6, 1)}


def post(url: str, inputs: Any, timeout: float = 3600) -> tuple[float, Any]:
    body = json.dumps({"inputs": inputs}).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=timeout) as r:
        answer = json.loads(r.read())
    return time.perf_counter() - t, answer


def server_run(model: Path, text: str, precision: str) -> dict[str, Any]:
    proc = subprocess.Popen([sys.executable, "-m", "albert.cli", "serve", "--task", "token-classification",
                             "--model", str(model), "--port", "0", "--precision", precision,
                             "--max-body", str(64 * 1024 * 1024)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        found = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        if not found:
            raise SystemExit(f"server did not start: {line}{proc.stderr.read()}")  # type: ignore[union-attr]
        url = found.group(1)
        post(url + "/tag", SENTENCE)
        idle = vm_hwm_mb(proc.pid)
        result: dict[str, Any] = {}

        def long_client() -> None:
            result["long_seconds"], answer = post(url + "/tag", text)
            result["long_entities"] = len(answer)

        def batches() -> int:
            with urllib.request.urlopen(url + "/health") as r:
                return int(json.loads(r.read()).get("batches", 0))

        before = batches()
        worker = threading.Thread(target=long_client)
        worker.start()
        while batches() < before + 2 and worker.is_alive():  # the long text's first model calls are done
            time.sleep(0.05)
        waits = []
        while worker.is_alive():
            waits.append(post(url + "/tag", SENTENCE)[0])
            time.sleep(0.2)
        worker.join()
        return {"idle_peak_rss_mb": round(idle), "peak_rss_mb": round(vm_hwm_mb(proc.pid)),
                "sentence_waits": len(waits),
                "sentence_median_s": round(statistics.median(waits), 3) if waits else None,
                "sentence_max_s": round(max(waits), 3) if waits else None,
                "long_seconds": round(result["long_seconds"], 1), "long_entities": result["long_entities"]}
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chars", type=int, default=3_900_000)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "long_text.json"))
    args = p.parse_args()
    from albert.runtime.kernels import cpu_description

    cpu = cpu_description()
    precision = "auto" if "BF16" in cpu else "fp32"
    with tempfile.TemporaryDirectory() as tmp:
        model = tag_model(Path(tmp) / "tagger")
        text = long_text(args.chars)
        short_file, long_file = Path(tmp) / "short.txt", Path(tmp) / "long.txt"
        short_file.write_text(SENTENCE + "\n", encoding="utf-8")
        long_file.write_text(text + "\n", encoding="utf-8")
        report = {"cpu": cpu, "threads": os.cpu_count(), "precision": precision, "chars": len(text),
                  "cli_sentence": cli_run(model, short_file, precision)}
        report["cli_long"] = cli_run(model, long_file, precision)
        report["server"] = server_run(model, text, precision)
    print(json.dumps(report, indent=1))
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
