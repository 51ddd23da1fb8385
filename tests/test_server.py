"""`albert serve`: answers equal the pipeline's, concurrent requests batched, bad requests answered with 400."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import albert
from albert.errors import InputError
from albert.inference.server import Batcher, build_server

TEXTS = ["the whale and the [MASK] of the sea", "call me [MASK].", "the [MASK] was long and the [MASK] was dark",
         "a [MASK]", "some years ago i went to [MASK] and saw the watery part of the world"]


def post(url: str, payload: Any) -> tuple[int, Any]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def fill_mask(tiny_model: Path) -> Any:
    return albert.pipeline("fill-mask", model=tiny_model, precision="fp32")


@pytest.fixture(scope="module")
def server(fill_mask: Any) -> Iterator[tuple[str, Batcher]]:
    srv, batcher = build_server(fill_mask, "fill-mask", "127.0.0.1", 0, info={"model": "tiny"})
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", batcher
    srv.shutdown()
    srv.server_close()
    batcher.close()


def same(a: Any, b: Any) -> bool:
    """Equal answers: strings and integers exactly, scores and vectors to 1e-5 (a batch pads, one input does
    not)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) < 1e-5
    return a == b


def test_answers_equal_the_pipeline(server: tuple[str, Batcher], fill_mask: Any) -> None:
    url, _ = server
    status, one = post(f"{url}/fill-mask", {"inputs": TEXTS[0], "parameters": {"top_k": 3}})
    assert status == 200 and same(one, fill_mask(TEXTS[0], top_k=3)) and len(one) == 3
    status, many = post(f"{url}/fill-mask", {"inputs": TEXTS})
    assert status == 200 and same(many, [fill_mask(t) for t in TEXTS])


def test_concurrent_requests_each_get_their_own_answer(server: tuple[str, Batcher], fill_mask: Any) -> None:
    url, _ = server
    texts = TEXTS * 4
    answers: list[Any] = [None] * len(texts)

    def ask(i: int) -> None:
        answers[i] = post(f"{url}/fill-mask", {"inputs": texts[i], "parameters": {"top_k": 2 + i % 2}})

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (status, got) in enumerate(answers):
        assert status == 200 and same(got, fill_mask(texts[i], top_k=2 + i % 2))


def test_requests_queued_while_busy_run_as_one_batch_and_a_bad_one_fails_alone(fill_mask: Any) -> None:
    release = threading.Event()
    calls: list[int] = []

    def run(items: list[Any], **kw: Any) -> list[Any]:
        calls.append(len(items))
        if len(calls) == 1:
            release.wait(10)  # the model is busy: the next requests queue up meanwhile
        return fill_mask(items, **kw)

    batcher = Batcher(run)
    results: dict[str, Any] = {}

    def ask(name: str, items: list[str]) -> None:
        try:
            results[name] = batcher(items, {"top_k": 1})
        except InputError as e:
            results[name] = e

    first = threading.Thread(target=ask, args=("first", [TEXTS[0]]))
    first.start()
    while not calls:
        time.sleep(0.01)
    queued = [threading.Thread(target=ask, args=(f"q{i}", [TEXTS[i]])) for i in (1, 2, 3)]
    queued.append(threading.Thread(target=ask, args=("bad", ["no mask here"])))
    for t in queued:
        t.start()
    while batcher.queue.qsize() < 4:
        time.sleep(0.01)
    release.set()
    for t in [first, *queued]:
        t.join()
    batcher.close()
    # 1 alone, then the 4 queued together (which fails on the bad one), then each of them alone
    assert calls == [1, 4, 1, 1, 1, 1]
    assert isinstance(results["bad"], InputError)
    for i in (1, 2, 3):
        assert same(results[f"q{i}"], [fill_mask(TEXTS[i], top_k=1)])


@pytest.mark.parametrize(("path", "payload", "status", "message"), [
    ("/fill-mask", b"{bad", 400, "invalid JSON"),
    ("/fill-mask", {"inputs": "no mask here"}, 400, "no [MASK]"),
    ("/fill-mask", {"inputs": 5}, 400, "input 1: expected a string"),
    ("/fill-mask", {"inputs": ["a [MASK]", {"txt": "b"}]}, 400, "input 2: expected a JSON object with 'text'"),
    ("/fill-mask", {"text": "a [MASK]"}, 400, '"inputs"'),
    ("/fill-mask", {"inputs": []}, 400, "empty"),
    ("/fill-mask", {"inputs": "a [MASK]", "parameters": {"top_k": 0}}, 400, "top_k"),
    ("/fill-mask", {"inputs": "a [MASK]", "parameters": {"topk": 1}}, 400, "unknown parameter 'topk'"),
    ("/embed", {"inputs": "a"}, 404, "POST /fill-mask"),
])
def test_bad_requests_get_a_one_line_error(server: tuple[str, Batcher], path: str, payload: Any, status: int,
                                           message: str) -> None:
    url, _ = server
    got_status, got = post(url + path, payload)
    assert got_status == status and message in got["error"] and "\n" not in got["error"]


def test_health(server: tuple[str, Batcher]) -> None:
    url, _ = server
    with urllib.request.urlopen(f"{url}/health", timeout=10) as r:
        health = json.loads(r.read())
    assert health["status"] == "ok" and health["task"] == "fill-mask" and health["model"] == "tiny"


def test_serve_cli_starts_answers_and_stops_on_sigterm(tiny_model: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "albert.cli", "serve", "--model", str(tiny_model), "--port", "0",
                             "--precision", "fp32"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        port = re.search(r"http://127\.0\.0\.1:(\d+)/fill-mask", line)
        assert port, line + (proc.stderr.read() if proc.stderr else "")
        status, answer = post(f"http://127.0.0.1:{port.group(1)}/fill-mask", {"inputs": "call me [MASK]."})
        assert status == 200 and len(answer) == 5
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0 and "stopped" in proc.stdout.read()
    finally:
        proc.kill()
    bad = subprocess.run([sys.executable, "-m", "albert.cli", "serve", "--model", str(tiny_model), "--port",
                          "70000"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("albert: error: --port")


@pytest.mark.parametrize(("task", "path", "inputs", "parameters"), [
    ("feature-extraction", "/embed", ["call me ishmael.", "the sea"], {"pooling": "mean", "normalize": True}),
    ("text-classification", "/classify", [{"text": "call me ishmael.", "text_pair": "the sea"}], {"top_k": 2}),
    ("question-answering", "/answer", {"question": "who ran?", "context": "the whale ran to the sea."},
     {"max_answer_length": 5}),
    ("multiple-choice", "/choose", [{"question": "the _ swam", "options": ["whale", "ship"]}], {}),
    ("sentence-order", "/sentence-order", {"first": "call me ishmael.", "second": "some years ago."}, {}),
])
def test_every_task_serves_what_its_pipeline_answers(with_head, task: str, path: str, inputs: Any,
                                                     parameters: dict[str, Any]) -> None:
    pipe = albert.pipeline(task, model=with_head(task), precision="fp32")
    srv, batcher = build_server(pipe, task, "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        status, got = post(f"http://127.0.0.1:{srv.server_address[1]}{path}",
                           {"inputs": inputs, "parameters": parameters})
        expected = pipe(inputs if not isinstance(inputs, dict) or task != "question-answering" else [inputs],
                        **parameters)
        if task == "question-answering":
            expected = expected[0]
        assert status == 200 and same(got, expected), (got, expected)
        status, bad = post(f"http://127.0.0.1:{srv.server_address[1]}{path}", {"inputs": [{"wrong": 1}]})
        assert status == 400 and bad["error"].startswith("input 1: expected")
    finally:
        srv.shutdown()
        srv.server_close()
        batcher.close()


def test_task_auto_follows_the_saved_architecture(tiny_model: Path, tmp_path: Path) -> None:
    from albert.inference.server import task_for

    assert task_for(str(tiny_model)) == "fill-mask"
    albert.AlbertForTokenClassification.from_pretrained(tiny_model).save_pretrained(tmp_path / "tagger")
    assert task_for(str(tmp_path / "tagger")) == "token-classification"


def test_a_batch_never_exceeds_max_batch_and_close_answers_what_was_queued() -> None:
    release = threading.Event()
    calls: list[list[int]] = []

    def run(items: list[int]) -> list[int]:
        calls.append(list(items))
        if len(calls) == 1:
            release.wait(10)
        return [x * 10 for x in items]

    batcher = Batcher(run, max_batch=3)
    results: dict[int, Any] = {}
    sizes = {0: 1, 1: 2, 2: 1, 3: 2, 4: 1}  # request → number of inputs
    threads = []
    for r, n in sizes.items():
        threads.append(threading.Thread(target=lambda r=r, n=n: results.__setitem__(r, batcher([r] * n, {}))))
        threads[-1].start()
        # in order: the first is being run (the model is busy), each next one queued before the one after
        while (not calls) if r == 0 else (batcher.queue.qsize() < r):
            time.sleep(0.005)
    release.set()
    for t in threads:
        t.join()
    batcher.close()
    assert calls == [[0], [1, 1, 2], [3, 3, 4]]  # 2 + 1 fit in 3; the next 2 waits for the batch after
    assert results == {r: [r * 10] * n for r, n in sizes.items()}
