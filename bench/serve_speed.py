"""`albert serve` under concurrent clients: requests/s and latency, batched against one-call-per-request.

    python bench/serve_speed.py [--clients 16] [--requests 8] [--rounds 5] [--out bench/results/serve_speed.json]

Each client sends single-sentence fill-mask requests (a real sentence with one word masked) one after the
other; all clients at once. Contenders, each behind the same HTTP server, in one run on the same texts:
- ours_batched: `albert serve` as shipped (requests that queue while the model is busy run as one batch);
- ours_unbatched: the same with --max-batch 1 (one pipeline call per request);
- transformers: transformers' fill-mask pipeline on the same model directory, one call per request, as a
  plain web wrapper around it would do.
Model: the embedded albert-small-en, fp32 (what `albert serve` runs on a CPU without bf16 units). The clients
run in a process of their own, so that they do not share the server's interpreter lock.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import torch

import albert
from albert.hub import resolve_model_dir
from albert.inference.server import build_server
from albert.runtime import cpu_description

ROOT = Path(__file__).resolve().parents[1]


def sentences(n: int) -> list[str]:
    """Real sentences of 8-40 words from the committed public-domain text, the middle word masked."""
    out = []
    for line in (ROOT / "tests" / "fixtures" / "public_domain.txt").read_text().splitlines():
        for s in line.split(". "):
            words = s.split()
            if 8 <= len(words) <= 40:
                words[len(words) // 2] = "[MASK]"
                out.append(" ".join(words))
            if len(out) == n:
                return out
    return out


def load(url: str, texts: list[str], clients: int) -> dict[str, Any]:
    """All clients at once, each sending its share of `texts` one request after another."""
    latencies: list[float] = []
    lock = threading.Lock()

    def client(mine: list[str]) -> None:
        for text in mine:
            body = json.dumps({"inputs": text, "parameters": {"top_k": 5}}).encode()
            req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
            t = time.perf_counter()
            with urllib.request.urlopen(req, timeout=300) as r:
                answer = json.loads(r.read())
            took = time.perf_counter() - t
            assert r.status == 200 and len(answer) == 5
            with lock:
                latencies.append(took)

    threads = [threading.Thread(target=client, args=(texts[i::clients],)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    latencies.sort()
    return {"requests_per_s": round(len(texts) / wall, 1), "wall_s": round(wall, 2),
            "latency_ms_p50": round(statistics.median(latencies) * 1000, 1),
            "latency_ms_p95": round(latencies[int(0.95 * (len(latencies) - 1))] * 1000, 1)}


def load_from_elsewhere(url: str, texts: list[str], clients: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--load", url, "--clients", str(clients), "--requests", str(len(texts))]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--load", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=8, help="per client")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--model", default="albert-small-en")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "serve_speed.json"))
    a = ap.parse_args()
    if a.load:  # the client process: --requests is the total here
        print(json.dumps(load(a.load, sentences(a.requests), a.clients)))
        return
    import transformers

    directory = str(resolve_model_dir(a.model))
    ours = albert.pipeline("fill-mask", model=directory, precision="fp32")
    theirs_pipe = transformers.pipeline("fill-mask", model=directory, tokenizer=directory, device="cpu")

    def theirs(items: list[str], top_k: int = 5) -> list[Any]:
        return [theirs_pipe(x, top_k=top_k) for x in items]

    contenders = {"ours_batched": (ours, 64), "ours_unbatched": (ours, 1), "transformers": (theirs, 1)}
    texts = sentences(a.clients * a.requests)
    servers = {}
    for name, (pipe, max_batch) in contenders.items():
        server, batcher = build_server(pipe, "fill-mask", "127.0.0.1", 0, max_batch=max_batch)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/fill-mask"
        load(url, texts[:a.clients], a.clients)  # warm-up
        servers[name] = (server, batcher, url)
    # rounds alternate the contenders, so that the machine's noise hits all of them alike; medians reported
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
    for _ in range(a.rounds):
        for name, (_, batcher, url) in servers.items():
            served_before, batches_before = batcher.requests, batcher.batches
            run = load_from_elsewhere(url, texts, a.clients)
            run["requests_per_model_call"] = round(
                (batcher.requests - served_before) / max(1, batcher.batches - batches_before), 1)
            runs[name].append(run)
            print(name, json.dumps(run), flush=True)
    for server, batcher, _ in servers.values():
        server.shutdown()
        server.server_close()
        batcher.close()
    results = {name: {key: statistics.median(r[key] for r in rs) for key in rs[0]} | {"rounds": rs}
               for name, rs in runs.items()}
    result = {"benchmark": "serve_speed", "machine": cpu_description(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "transformers": transformers.__version__, "model": a.model,
              "precision": "fp32", "clients": a.clients, "requests": len(texts), "rounds": a.rounds,
              "results": results,
              "batched_vs_transformers": round(results["ours_batched"]["requests_per_s"]
                                               / results["transformers"]["requests_per_s"], 2),
              "batched_vs_unbatched": round(results["ours_batched"]["requests_per_s"]
                                            / results["ours_unbatched"]["requests_per_s"], 2)}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("batched_vs_transformers", "batched_vs_unbatched")}))


if __name__ == "__main__":
    main()
