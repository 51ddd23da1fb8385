"""`albert serve` under concurrent clients, and its fairness: one run, contenders alternating, medians reported.

    python bench/serve_speed.py [--clients 16] [--requests 8] [--rounds 5] [--big 10000] [--before REV]
                                [--out bench/results/serve_speed.json]

Throughput: each of 16 clients sends single-sentence fill-mask requests (a real sentence, one word masked) one
after the other, all clients at once. Fairness: a one-sentence client asks again and again while another client
sends one request of `--big` inputs; its latency then is compared with its latency on an idle server.
Contenders, each a server process of its own (the clients run in another process):
- asgi: `albert serve` of this checkout (FastAPI on uvicorn, batched by count and tokens, big requests split);
- http_server: `albert serve` as it was before the ASGI rebuild (`--before`, run from a git worktree of it);
- transformers: transformers' fill-mask pipeline, one call per request, behind this checkout's ASGI app.
Model: the embedded albert-small-en, fp32 (what `albert serve` runs on a CPU without bf16 units).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "1908a18"  # the last commit with the http.server server


def sentences(n: int) -> list[str]:
    """Real sentences of 8-40 words from the committed public-domain text, the middle word masked (cycled)."""
    out: list[str] = []
    for line in (ROOT / "tests" / "fixtures" / "public_domain.txt").read_text().splitlines():
        for s in line.split(". "):
            words = s.split()
            if 8 <= len(words) <= 40:
                words[len(words) // 2] = "[MASK]"
                out.append(" ".join(words))
    return [out[i % len(out)] for i in range(n)]


def ask(url: str, inputs: Any, timeout: float = 1800) -> float:
    body = json.dumps({"inputs": inputs, "parameters": {"top_k": 5}}).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=timeout) as r:
        answer = json.loads(r.read())
    assert r.status == 200 and len(answer) == (5 if isinstance(inputs, str) else len(inputs))
    return time.perf_counter() - t


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * (len(values) - 1) + 0.5))]


def load(url: str, texts: list[str], clients: int) -> dict[str, Any]:
    """All clients at once, each sending its share of `texts` one request after another."""
    latencies: list[float] = []
    lock = threading.Lock()

    def client(mine: list[str]) -> None:
        for text in mine:
            took = ask(url, text)
            with lock:
                latencies.append(took)

    threads = [threading.Thread(target=client, args=(texts[i::clients],)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"requests_per_s": round(len(texts) / wall, 1), "wall_s": round(wall, 2),
            "latency_ms_p50": round(statistics.median(latencies) * 1000, 1),
            "latency_ms_p99": round(percentile(latencies, 0.99) * 1000, 1)}


def fairness(url: str, big: int) -> dict[str, Any]:
    """A one-sentence client's latency, idle and while a `big`-input request is being answered."""
    text = sentences(1)[0]
    idle = [ask(url, text) for _ in range(20)]
    texts = sentences(big)
    done = threading.Event()
    took: dict[str, float] = {}

    def big_client() -> None:
        took["big_s"] = ask(url, texts)
        done.set()

    thread = threading.Thread(target=big_client)
    thread.start()
    time.sleep(1.0)  # the big request is in
    busy = []
    while not done.is_set():
        busy.append(ask(url, text))
    thread.join()
    ms = lambda xs, q: round(percentile(xs, q) * 1000, 1)  # noqa: E731
    return {"idle_ms_p50": ms(idle, 0.5), "idle_ms_p99": ms(idle, 0.99), "busy_ms_p50": ms(busy, 0.5),
            "busy_ms_p99": ms(busy, 0.99), "busy_requests": len(busy), "big_inputs": big,
            "big_request_s": round(took["big_s"], 1)}


def run_in_client_process(command: str, url: str, **kw: Any) -> dict[str, Any]:
    args = [sys.executable, __file__, "--client", command, "--url", url, *[f"--{k}={v}" for k, v in kw.items()]]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def start(cmd: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.search(r"(http://127\.0\.0\.1:\d+)", line)
    if not found:
        raise SystemExit(f"server did not start: {line}{proc.stderr.read() if proc.stderr else ''}")
    return proc, found.group(1) + "/fill-mask"


def serve_transformers(model: str) -> None:
    """The transformers contender: its fill-mask pipeline, one call per request, behind our ASGI app."""
    import transformers

    import albert
    from albert.io.hub import resolve_model_dir
    from albert.serving.launch import ServeSettings, build_app, running

    directory = str(resolve_model_dir(model))
    theirs = transformers.pipeline("fill-mask", model=directory, tokenizer=directory, device="cpu")
    ours = albert.pipeline("fill-mask", model=directory, precision="fp32")  # its tokenizer counts the tokens

    class Theirs:
        tokenizer, model = ours.tokenizer, ours.model

        def __call__(self, items: list[str], top_k: int = 5) -> list[Any]:
            return [theirs(x, top_k=top_k) for x in items]

    settings = ServeSettings(max_batch=1)
    app, batcher = build_app(Theirs(), "fill-mask", settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with running(app, settings) as url:
        print(f"transformers on {url}/fill-mask", flush=True)
        stop.wait()
    batcher.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--client", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--url", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--serve-transformers", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=8, help="per client")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--big", type=int, default=10000, help="inputs of the big request in the fairness case (0: skip)")
    ap.add_argument("--before", default=BEFORE, help="the commit of the server before the ASGI rebuild")
    ap.add_argument("--model", default="albert-small-en")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "serve_speed.json"))
    a = ap.parse_args()
    if a.client == "load":
        print(json.dumps(load(a.url, sentences(a.clients * a.requests), a.clients)))
        return
    if a.client == "fairness":
        print(json.dumps(fairness(a.url, a.big)))
        return
    if a.serve_transformers:
        serve_transformers(a.model)
        return

    import torch
    import transformers

    from albert.runtime.kernels import cpu_description

    old = Path(tempfile.mkdtemp()) / "before"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), a.before], check=True,
                   capture_output=True)
    serve = ["serve", "--model", a.model, "--port", "0", "--precision", "fp32"]
    procs: dict[str, tuple[subprocess.Popen, str]] = {}
    try:
        procs["asgi"] = start([sys.executable, "-m", "albert", *serve])
        procs["http_server"] = start([sys.executable, "-m", "albert.cli", *serve],
                                     env=os.environ | {"PYTHONPATH": str(old / "src")})
        procs["transformers"] = start([sys.executable, __file__, "--serve-transformers", "--model", a.model])
        for _, url in procs.values():  # warm-up, and wait for the model to be loaded
            deadline = time.time() + 120
            while True:
                try:
                    ask(url, sentences(1)[0])
                    break
                except (urllib.error.URLError, ConnectionError):
                    if time.time() > deadline:
                        raise
                    time.sleep(0.3)
        # rounds alternate the contenders, so that the machine's noise hits all of them alike
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in procs}
        for _ in range(a.rounds):
            for name, (_, url) in procs.items():
                run = run_in_client_process("load", url, clients=a.clients, requests=a.requests)
                runs[name].append(run)
                print(name, json.dumps(run), flush=True)
        fair = {}
        for name in ("asgi", "http_server") if a.big else ():
            fair[name] = run_in_client_process("fairness", procs[name][1], big=a.big)
            print("fairness", name, json.dumps(fair[name]), flush=True)
    finally:
        for proc, _ in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc, _ in procs.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], capture_output=True)
    results = {name: {key: statistics.median(r[key] for r in rs) for key in rs[0]} | {"rounds": rs}
               for name, rs in runs.items()}
    rps = {name: r["requests_per_s"] for name, r in results.items()}
    result = {"benchmark": "serve_speed", "machine": cpu_description(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "transformers": transformers.__version__, "model": a.model,
              "precision": "fp32", "clients": a.clients, "requests": a.clients * a.requests, "rounds": a.rounds,
              "before": a.before, "results": results, "fairness": fair,
              "asgi_vs_http_server": round(rps["asgi"] / rps["http_server"], 2),
              "asgi_vs_transformers": round(rps["asgi"] / rps["transformers"], 2)}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("asgi_vs_http_server", "asgi_vs_transformers")} | {
        "fairness_busy_p99_ms": {k: v["busy_ms_p99"] for k, v in fair.items()}}))  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
