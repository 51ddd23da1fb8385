"""`albert serve` under stalled uploads: memory, and a normal request behind them.

    python bench/stalled_uploads.py [--connections 500] [--out bench/results/stalled_uploads.json]

Each of `--connections` clients declares a Content-Length one byte under `--max-body` (8 MiB), sends all of its body
but the last byte and then waits, holding its connection open. The server (`albert serve --task fill-mask`, the
embedded model) is measured before and after: resident memory (VmRSS) and its peak (VmHWM); then a one-sentence
request is timed while the uploads still stall. How many uploads were refused (503 with Retry-After, the body
budget `--max-bodies` being full) and how many are held is reported. The issue's target: RSS at most the idle
server's + 300 MB, and the one-sentence request answered in under a second.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MAX_BODY = 8 * 1024 * 1024


def vm(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return round(int(line.split()[1]) / 1024)
    return -1


def ask(url: str) -> float:
    body = json.dumps({"inputs": "The whale swam through the [MASK] sea."}).encode()
    req = urllib.request.Request(url + "/fill-mask", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 200
        r.read()
    return time.perf_counter() - t


def stall(port: int, outcome: list[str], hold: threading.Event) -> None:
    """Send all of a body but its last byte, then wait; record what the server did."""
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    try:
        s.sendall(b"POST /fill-mask HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                  + f"Content-Length: {MAX_BODY - 1}\r\n\r\n".encode())
        chunk = b"x" * (1 << 20)
        left = MAX_BODY - 2
        while left:
            s.sendall(chunk[:min(left, len(chunk))])
            left -= min(left, len(chunk))
        s.settimeout(0.5)
        try:
            answer = s.recv(200)
            outcome.append(answer.split(b"\r\n")[0].decode(errors="replace") if answer else "closed")
        except TimeoutError:
            outcome.append("held")
            hold.wait()
    except OSError as e:  # refused while sending: the server answered and closed
        outcome.append(f"refused while sending ({type(e).__name__})")
    finally:
        s.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=500)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "stalled_uploads.json"))
    args = p.parse_args()
    from albert.runtime.kernels import cpu_description

    proc = subprocess.Popen([sys.executable, "-m", "albert.cli", "serve", "--task", "fill-mask", "--port", "0",
                             "--body-timeout", "600"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if not found:
            raise SystemExit(f"server did not start: {line}{proc.stderr.read()}")  # type: ignore[union-attr]
        port = int(found.group(1))
        url = f"http://127.0.0.1:{port}"
        idle_latency = min(ask(url) for _ in range(5))
        idle = vm(proc.pid, "VmRSS")
        outcome: list[str] = []
        hold = threading.Event()
        clients = [threading.Thread(target=stall, args=(port, outcome, hold), daemon=True)
                   for _ in range(args.connections)]
        for c in clients:
            c.start()
        deadline = time.time() + 600
        while len(outcome) < args.connections and time.time() < deadline:
            time.sleep(0.5)
        stalled_rss = vm(proc.pid, "VmRSS")
        latencies = [ask(url) for _ in range(5)]
        report: dict[str, Any] = {
            "cpu": cpu_description(), "connections": args.connections, "max_body": MAX_BODY,
            "outcomes": {k: outcome.count(k) for k in sorted(set(outcome))},
            "idle_rss_mb": idle, "stalled_rss_mb": stalled_rss, "peak_rss_mb": vm(proc.pid, "VmHWM"),
            "rss_over_idle_mb": stalled_rss - idle,
            "sentence_idle_s": round(idle_latency, 3),
            "sentence_behind_stalled_s": sorted(round(x, 3) for x in latencies)}
        hold.set()
    finally:
        proc.terminate()
        proc.wait(30)
    print(json.dumps(report, indent=1))
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
