"""`albert serve`: answers equal the pipeline's, batching is fair, every client error is a 4xx with one JSON line,
and the ecosystem's clients (huggingface_hub's InferenceClient, text-embeddings-inference's body) work unchanged."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
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
from albert.serving.batcher import Batcher
from albert.serving.launch import ServeSettings, build_app, running

TEXTS = ["the whale and the [MASK] of the sea", "call me [MASK].", "the [MASK] was long and the [MASK] was dark",
         "a [MASK]", "some years ago i went to [MASK] and saw the watery part of the world"]


def request(url: str, payload: Any = None, method: str | None = None, headers: dict[str, str] | None = None
            ) -> tuple[int, Any, dict[str, str]]:
    body = None if payload is None else payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=body, method=method or ("POST" if body is not None else "GET"),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            raw = r.read()
            kind = r.headers.get("content-type", "")
            return r.status, json.loads(raw) if "json" in kind and raw else raw.decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None, dict(e.headers)


def post(url: str, payload: Any) -> tuple[int, Any]:
    status, body, _ = request(url, payload)
    return status, body


@pytest.fixture(scope="module")
def fill_mask(tiny_model: Path) -> Any:
    return albert.pipeline("fill-mask", model=tiny_model, precision="fp32")


@pytest.fixture(scope="module")
def server(fill_mask: Any) -> Iterator[str]:
    settings = ServeSettings(max_body=64 * 1024, max_inputs=300)
    app, batcher = build_app(fill_mask, "fill-mask", settings, info={"model": "tiny", "precision": "fp32"})
    with running(app, settings) as url:
        yield url
    batcher.close()


def same(a: Any, b: Any) -> bool:
    """Equal answers: strings and integers exactly, scores and vectors to 1e-5 (a batch pads, one input does not)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) < 1e-5
    return a == b


def test_answers_equal_the_pipeline(server: str, fill_mask: Any) -> None:
    status, one = post(f"{server}/fill-mask", {"inputs": TEXTS[0], "parameters": {"top_k": 3}})
    assert status == 200 and same(one, fill_mask(TEXTS[0], top_k=3)) and len(one) == 3
    status, many = post(f"{server}/fill-mask", {"inputs": TEXTS})
    assert status == 200 and same(many, [fill_mask(t) for t in TEXTS])
    status, api = post(server + "/", {"inputs": TEXTS[1], "parameters": {"top_k": 2}})  # the inference API's route
    assert status == 200 and same(api, fill_mask(TEXTS[1], top_k=2))


def test_concurrent_requests_each_get_their_own_answer(server: str, fill_mask: Any) -> None:
    texts = TEXTS * 4
    answers: list[Any] = [None] * len(texts)

    def ask(i: int) -> None:
        answers[i] = post(f"{server}/fill-mask", {"inputs": texts[i], "parameters": {"top_k": 2 + i % 2}})

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (status, got) in enumerate(answers):
        assert status == 200 and same(got, fill_mask(texts[i], top_k=2 + i % 2))


def _wait(condition: Any) -> None:
    deadline = time.time() + 10
    while not condition():
        assert time.time() < deadline
        time.sleep(0.005)


def test_requests_queued_while_busy_share_a_batch_and_a_bad_one_fails_alone(fill_mask: Any) -> None:
    release = threading.Event()
    calls: list[int] = []

    def run(items: list[Any], **kw: Any) -> list[Any]:
        calls.append(len(items))
        if len(calls) == 1:
            release.wait(10)  # the model is busy: the next requests queue up meanwhile
        return fill_mask(items, **kw)

    batcher = Batcher(run)
    first = batcher.submit([TEXTS[0]], {"top_k": 1})
    _wait(lambda: calls)
    queued = [batcher.submit([TEXTS[i]], {"top_k": 1}) for i in (1, 2, 3)]
    bad = batcher.submit(["no mask here"], {"top_k": 1})
    release.set()
    first.result(10)
    for i, f in zip((1, 2, 3), queued):
        assert same(f.result(10), [fill_mask(TEXTS[i], top_k=1)])
    with pytest.raises(InputError):
        bad.result(10)
    batcher.close()
    assert calls == [1, 4, 1, 1, 1, 1]  # 1 alone, the 4 queued together (failing on the bad one), then each alone


def test_batches_respect_count_and_token_budgets_and_big_requests_take_turns() -> None:
    release = threading.Event()
    calls: list[list[str]] = []

    def run(items: list[str]) -> list[str]:
        calls.append(list(items))
        if len(calls) == 1:
            release.wait(10)
        return [x.upper() for x in items]

    batcher = Batcher(run, max_batch=4, max_batch_tokens=10)
    first = batcher.submit(["warm"], {}, [1])
    _wait(lambda: calls)
    big = batcher.submit([f"b{i}" for i in range(40)], {}, [1] * 40)
    small = batcher.submit(["s0"], {}, [1])
    heavy = batcher.submit(["h0", "h1"], {}, [8, 8])  # 8 tokens each: one per batch under a budget of 10
    release.set()
    assert big.result(10) == [f"B{i}" for i in range(40)] and small.result(10) == ["S0"]
    assert heavy.result(10) == ["H0", "H1"] and first.result(10) == ["WARM"]
    batcher.close()
    assert all(len(c) <= 4 for c in calls)
    assert "s0" in calls[1]  # the one-input request rode in the very next batch, beside the 40-input one
    assert not any("h0" in c and "h1" in c for c in calls)  # 16 tokens never went together


@pytest.mark.parametrize("task", ["token-classification", "question-answering"])
def test_a_long_text_s_windows_take_turns_with_other_requests(with_head, task: str) -> None:
    """A text of many windows runs a model call at a time (the pipeline's steps): a one-sentence request sent after
    its first call is answered after at most one more of its calls, not after all of them; both answers are the
    pipeline's."""
    from albert.serving.batcher import BatchStats
    from albert.serving.shapes import input_tokens
    from albert.tasks.registry import get_task

    pipe = albert.pipeline(task, model=with_head(task), precision="fp32")
    limit = pipe.model.config.max_position_embeddings
    text = " ".join(["ishmael sailed from nantucket to the sea."] * 1200)  # ~12 model calls of WINDOW_TOKENS
    long_item: Any = text if task == "token-classification" else {"question": "who sailed?", "context": text}
    short_item: Any = "call me ishmael." if task == "token-classification" else {"question": "who?",
                                                                                 "context": "the whale ran."}
    events: list[str] = []
    futures: dict[str, Any] = {}

    def on_batch(inputs: int, tokens: int) -> None:
        events.append("call")
        if "short" not in futures:  # sent once the long text is under way
            cost = input_tokens(pipe.tokenizer, get_task(task), short_item)
            futures["short"] = batcher.submit([short_item], {}, [cost])
            futures["short"].add_done_callback(lambda _: events.append("short answered"))

    batcher = Batcher(pipe, stats=BatchStats(on_batch=on_batch), steps=pipe.steps, steps_above=limit)
    cost = input_tokens(pipe.tokenizer, get_task(task), long_item)
    long = batcher.submit([long_item], {}, [cost])
    long.add_done_callback(lambda _: events.append("long answered"))
    assert same(long.result(60), pipe([long_item]))
    assert same(futures["short"].result(60), pipe([short_item]))
    batcher.close()
    calls_before_short = events[:events.index("short answered")].count("call")
    assert events.count("call") > 6 and calls_before_short <= 3, events  # the long one's first, at most one more,
    assert events[-1] == "long answered"  # the short one's; then the long one's remaining calls


@pytest.mark.parametrize(("payload", "status", "message"), [
    (b"{bad", 400, "invalid JSON"),
    ({"inputs": "no mask here"}, 400, "no [MASK]"),
    ({"inputs": 5}, 400, "input 1: expected a string"),
    ({"inputs": ["a [MASK]", {"txt": "b"}]}, 400, "input 2: expected a JSON object with 'text'"),
    ({"text": "a [MASK]"}, 400, '"inputs"'),
    ({"inputs": []}, 400, "empty"),
    ({"inputs": "a [MASK]", "parameters": {"top_k": 0}}, 400, "top_k"),
    ({"inputs": "a [MASK]", "parameters": {"top_k": 10**6}}, 400, "at most 1000"),
    ({"inputs": "a [MASK]", "parameters": {"top_k": 10**40}}, 400, "top_k"),
    ({"inputs": "a [MASK]", "parameters": {"topk": 1}}, 400, "unknown parameter 'topk'"),
    (b'{"inputs": "a [MASK] \\ud800"}', 400, "lone surrogate"),
    (b'{"inputs": ' + b"[" * 30_000 + b"]" * 30_000 + b"}", 400, "nested too deep"),
    (b'{"inputs": "a [MASK]", "parameters": {"top_k": ' + b"9" * 5000 + b"}}", 400, "4,300 digits"),
    (b'{"inputs": "a [MASK]", "parameters": {"top_k": NaN}}', 400, "NaN"),
    (b"\xff\xfe", 400, "not UTF-8"),
    ({"inputs": ["a [MASK]"] * 301}, 400, "the limit is 300"),
])
def test_bad_requests_get_a_one_line_json_error(server: str, payload: Any, status: int, message: str) -> None:
    got_status, got = post(f"{server}/fill-mask", payload)
    assert got_status == status and message in got["error"] and "\n" not in got["error"], got


def test_other_client_errors_are_json_too(server: str) -> None:
    status, body, _ = request(f"{server}/classify", {"inputs": "a"})
    assert status == 404 and "error" in body
    status, body, _ = request(f"{server}/fill-mask", method="GET")
    assert status == 405 and "error" in body
    status, body, headers = request(f"{server}/fill-mask", method="OPTIONS")
    assert status == 204 and "POST" in headers["allow"]
    status, _, _ = request(f"{server}/health", method="HEAD")
    assert status == 200


def _raw(url: str, data: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as s:
        s.sendall(data)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
        return reply


def test_a_body_over_the_limit_is_refused_before_it_is_read(server: str) -> None:
    # no body follows the headers, and the socket is still open for one: a server that waited for the body would
    # answer only when _raw's socket timed out (which raises), so a reply at all shows it did not wait
    reply = _raw(server, b"POST /fill-mask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 900000000\r\n\r\n")  # no body follows: the answer must not wait for it
    assert reply.startswith(b"HTTP/1.1 413") and b"the limit is 65,536" in reply
    chunk = b'{"inputs": "' + b"x" * 40_000
    reply = _raw(server, b"POST /fill-mask HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         + b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2 + b"0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 413")
    status, answer = post(f"{server}/fill-mask", {"inputs": "call me [MASK]."})  # and it still answers
    assert status == 200


def test_health_info_docs_openapi_metrics_and_page(server: str) -> None:
    status, health, _ = request(f"{server}/health")
    assert status == 200 and health["status"] == "ok" and health["task"] == "fill-mask" and health["model"] == "tiny"
    status, info, _ = request(f"{server}/info")
    assert info["max_input_length"] == 128 and info["max_client_batch_size"] == 300  # the tiny model's 128 positions
    assert [f["name"] for f in info["fields"]] == ["text"] and info["parameters"][0]["name"] == "top_k"
    assert info["example"] == {"text": "The whale swam through the [MASK] sea."}  # the page starts from it
    status, docs, _ = request(f"{server}/docs")
    assert status == 200 and "swagger" in docs.lower()
    status, spec, _ = request(f"{server}/openapi.json")
    paths = spec["paths"]
    assert {"/fill-mask", "/", "/health", "/info", "/metrics"} <= set(paths)
    ref = paths["/fill-mask"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"inputs", "parameters"} <= set(schema["properties"])
    assert "FillMaskParameters" in spec["components"]["schemas"]
    post(f"{server}/fill-mask", {"inputs": TEXTS[:3]})
    status, text, _ = request(f"{server}/metrics")
    assert status == 200
    count = float(re.search(r'albert_requests_total\{route="/fill-mask",status="200"\} (\S+)', text).group(1))
    assert count >= 1 and "albert_batch_inputs_bucket" in text and "albert_tokens_total" in text
    assert "albert_queue_inputs" in text and "albert_request_seconds_bucket" in text
    post(f"{server}/fill-mask", {"inputs": TEXTS[:3]})
    _, again, _ = request(f"{server}/metrics")
    assert float(re.search(r'albert_requests_total\{route="/fill-mask",status="200"\} (\S+)', again).group(1)) > count
    status, page, _ = request(server + "/")
    assert status == 200 and "<form" in page and "http://" not in page.replace("http://www.w3.org", "")


def test_api_key(fill_mask: Any) -> None:
    import base64

    settings = ServeSettings(api_key="s3cret")
    app, batcher = build_app(fill_mask, "fill-mask", settings)
    with running(app, settings) as url:
        status, body, headers = request(f"{url}/fill-mask", {"inputs": "a [MASK]"})
        assert status == 401 and "API key" in body["error"] and "basic" in headers["www-authenticate"].lower()
        for path in ("/", "/docs", "/openapi.json", "/metrics", "/info"):
            assert request(url + path)[0] == 401
        assert request(f"{url}/health")[0] == 200
        assert request(f"{url}/fill-mask", {"inputs": "a [MASK]"}, headers={"Authorization": "Bearer wrong"})[0] == 401
        for header in ({"Authorization": "Bearer s3cret"}, {"X-API-Key": "s3cret"},
                       {"Authorization": "Basic " + base64.b64encode(b"me:s3cret").decode()}):
            assert request(f"{url}/fill-mask", {"inputs": "a [MASK]"}, headers=header)[0] == 200
    batcher.close()


@pytest.mark.parametrize(("task", "path", "inputs", "parameters"), [
    ("feature-extraction", "/embed", ["call me ishmael.", "the sea"], {"pooling": "mean", "normalize": True}),
    # an answer of more than STREAMED_VALUES values: sent as it is encoded, the same JSON
    ("feature-extraction", "/embed", [f"the sea, {n} times." for n in range(300)], {}),
    ("text-classification", "/classify", [{"text": "call me ishmael.", "text_pair": "the sea"}], {"top_k": 2}),
    ("token-classification", "/tag", "ishmael sailed from nantucket.", {"aggregation_strategy": "none"}),
    ("question-answering", "/answer", {"question": "who ran?", "context": "the whale ran to the sea."},
     {"max_answer_length": 5}),
    ("multiple-choice", "/choose", [{"question": "the _ swam", "options": ["whale", "ship"]}], {}),
    ("sentence-order", "/sentence-order", {"first": "call me ishmael.", "second": "some years ago."}, {}),
])
def test_every_task_serves_what_its_pipeline_answers(with_head, task: str, path: str, inputs: Any,
                                                     parameters: dict[str, Any]) -> None:
    pipe = albert.pipeline(task, model=with_head(task), precision="fp32")
    pipe.warm_up()  # the task's example is an input it takes (`serve --compile` runs it)
    app, batcher = build_app(pipe, task, ServeSettings())
    with running(app) as url:
        status, got = post(url + path, {"inputs": inputs, "parameters": parameters})
        expected = pipe(inputs if not isinstance(inputs, dict) or task != "question-answering" else [inputs],
                        **parameters)
        if task == "question-answering":
            expected = expected[0]
        assert status == 200 and same(got, expected), (got, expected)
        status, bad = post(url + path, {"inputs": [{"wrong": 1}], "parameters": {}})
        assert status == 400 and bad["error"].startswith("input 1: expected")
    batcher.close()


def test_huggingface_inference_client_works_unchanged(with_head, record_property: Any) -> None:
    """huggingface_hub's InferenceClient pointed at `albert serve` gets an answer for each task (no error); what it
    was sent — the inference API's body at / — is the pipeline's answer. Whether the client's parsed values equal it
    is recorded (their parsing is the client's)."""
    import huggingface_hub as hub

    checks = {  # task → (the client's call, the same request as the inference API's body)
        "fill-mask": (lambda c: c.fill_mask("call me [MASK]."), {"inputs": "call me [MASK]."}),
        "text-classification": (lambda c: c.text_classification("call me ishmael.", top_k=2),
                                {"inputs": "call me ishmael.", "parameters": {"top_k": 2}}),
        "token-classification": (lambda c: c.token_classification("ishmael sailed from nantucket."),
                                 {"inputs": "ishmael sailed from nantucket."}),
        "question-answering": (lambda c: c.question_answering(question="who ran?", context="the whale ran to sea."),
                               {"inputs": {"question": "who ran?", "context": "the whale ran to sea."}}),
        "feature-extraction": (lambda c: c.feature_extraction("call me ishmael."), {"inputs": "call me ishmael."}),
    }
    agreed = {}
    for task, (call, body) in checks.items():
        pipe = albert.pipeline(task, model=with_head(task), precision="fp32")
        app, batcher = build_app(pipe, task, ServeSettings())
        try:
            with running(app) as url:
                status, sent = post(url + "/", body)
                got = call(hub.InferenceClient(model=url))
        finally:
            batcher.close()
        inputs = body["inputs"]
        expected = pipe(**inputs) if isinstance(inputs, dict) else pipe(inputs, **body.get("parameters", {}))
        if task == "text-classification":
            expected = [expected]  # (the inference API's shape: a list per input)
        assert status == 200 and same(sent, expected), (task, sent, expected)
        raw = got.tolist() if hasattr(got, "tolist") else [dict(g) for g in got] if isinstance(got, list) else dict(got)
        agreed[task] = same(raw, sent if task != "text-classification" else sent[0])
    record_property("client_values_equal", agreed)


def test_text_embeddings_inference_body(with_head) -> None:
    import numpy as np

    pipe = albert.pipeline("feature-extraction", model=with_head("feature-extraction"), precision="fp32")
    app, batcher = build_app(pipe, "feature-extraction", ServeSettings())
    with running(app) as url:
        status, vectors = post(f"{url}/embed", {"inputs": "call me ishmael."})
        assert status == 200 and len(vectors) == 1 and abs(np.linalg.norm(vectors[0]) - 1) < 1e-5  # TEI normalises
        status, raw = post(f"{url}/embed", {"inputs": ["a", "b"], "normalize": False})
        assert same(raw, pipe(["a", "b"]))
        status, body = post(f"{url}/embed", {"inputs": "word " * 900})
        assert status == 413 and "truncate" in body["error"]
        status, cut = post(f"{url}/embed", {"inputs": "word " * 900, "truncate": True})
        assert status == 200 and len(cut) == 1
        assert post(f"{url}/embed", {"inputs": "a", "normalize": "yes"})[0] == 400
        status, info, _ = request(f"{url}/info")
        assert info["max_input_length"] == pipe.model.config.max_position_embeddings and "model_id" in info
    batcher.close()


def test_compiled_server_compiles_before_its_first_request_and_never_again(tiny_model: Path) -> None:
    """`serve --compile` warms up on every kind of batch at start (one row or more, one [MASK] or more): no request
    waits for a compilation, and the answers are the eager pipeline's."""
    from torch._dynamo.utils import counters

    from albert.serving.launch import load_app

    settings = ServeSettings(model=str(tiny_model), precision="fp32", compile=True)
    before = counters["stats"]["unique_graphs"]
    app, batcher, task = load_app(settings)
    compiled = counters["stats"]["unique_graphs"]
    assert task == "fill-mask" and compiled - before == 4  # one row or more, times one [MASK] or more
    eager = albert.pipeline("fill-mask", model=tiny_model, precision="fp32")
    with running(app, settings) as url:
        for inputs in (TEXTS[0], TEXTS[2], TEXTS, TEXTS[2:4], [TEXTS[2] + " " + TEXTS[2]]):
            status, got = post(f"{url}/fill-mask", {"inputs": inputs})
            assert status == 200 and same(got, eager(inputs)), inputs
    batcher.close()
    assert counters["stats"]["unique_graphs"] == compiled


def test_task_auto_follows_the_saved_architecture(tiny_model: Path, tmp_path: Path) -> None:
    from albert.serving.launch import task_for

    assert task_for(str(tiny_model)) == "fill-mask"
    albert.AlbertForTokenClassification.from_pretrained(tiny_model).save_pretrained(tmp_path / "tagger")
    assert task_for(str(tmp_path / "tagger")) == "token-classification"


def _start(args: list[str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "albert", "serve", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
    assert found, line + (proc.stderr.read() if proc.stderr else "")
    return proc, found.group(1)


def _accepted(pid: int, client: socket.socket) -> bool:
    """Whether the server process has accepted `client`'s connection: the kernel's entry for the server's end of it
    (/proc/net/tcp: local port = the server's, remote port = the client's) is a socket among the process's files."""
    server_port, client_port = client.getpeername()[1], client.getsockname()[1]
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if (int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)) == (server_port, client_port):
            inodes.add(f"socket:[{fields[9]}]")
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            held.add(os.readlink(fd))
        except OSError:  # closed meanwhile
            pass
    return bool(inodes & held)


def test_serve_cli_starts_answers_and_stops_on_sigterm_despite_stalled_clients(tiny_model: Path) -> None:
    proc, url = _start(["--model", str(tiny_model), "--port", "0", "--precision", "fp32", "--grace", "3"])
    try:
        deadline = time.time() + 60
        while True:  # the line is printed before the model has warmed up: ask until it answers
            try:
                status, answer = post(f"{url}/fill-mask", {"inputs": "call me [MASK]."})
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.time() < deadline
                time.sleep(0.2)
        assert status == 200 and len(answer) == 5
        assert request(f"{url}/info")[1]["grace_seconds"] == 3  # the flag reached the server that stops
        host, port = url.removeprefix("http://").split(":")
        stalled = socket.create_connection((host, int(port)))  # sends half a request, then nothing
        stalled.sendall(b"POST /fill-mask HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"inp")
        deadline = time.time() + 60
        while not _accepted(proc.pid, stalled):  # the server holds the stalled connection (an event, not a wait)
            assert time.time() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        # the stalled client never finishes its request: only the grace period ends the wait for it (the 60 s here
        # bounds a hang, it times nothing; test_hardening checks the grace's deadline itself)
        assert proc.wait(60) == 0 and "stopped" in proc.stdout.read()  # type: ignore[union-attr]
        stalled.close()
    finally:
        proc.kill()
    for args, says in ((["--port", "70000"], "--port"), (["--max-batch", "0"], "--max-batch")):
        bad = subprocess.run([sys.executable, "-m", "albert", "serve", "--model", str(tiny_model), *args],
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and bad.stderr.startswith(f"albert: error: {says}"), bad.stderr
    with socket.socket() as taken:  # a port in use: one line, before the model loads
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        bad = subprocess.run([sys.executable, "-m", "albert", "serve", "--model", str(tiny_model), "--port",
                              str(taken.getsockname()[1])], capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and "cannot listen on 127.0.0.1" in bad.stderr and "Traceback" not in bad.stderr


def test_several_worker_processes_keep_the_limits_and_the_key(tiny_model: Path) -> None:
    """A real `albert serve --workers 2` with $ALBERT_API_KEY and small limits: each of the two processes (told
    apart by /health's pid) refuses a request without the key (401), one over --max-inputs (400) and one over
    --max-body (413), and answers a good one; /info states the limits; SIGTERM stops both."""
    env = {**os.environ, "ALBERT_API_KEY": "s3cret"}
    proc = subprocess.Popen([sys.executable, "-m", "albert", "serve", "--model", str(tiny_model), "--port", "0",
                             "--precision", "fp32", "--workers", "2", "--max-inputs", "3", "--max-body", "4000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        found = re.search(r"(http://127\.0\.0\.1:\d+)/", proc.stdout.readline())
        assert found, proc.stderr.read() if proc.stderr else ""
        url, key = found.group(1), {"Authorization": "Bearer s3cret"}
        pids: set[int] = set()
        deadline = time.time() + 120
        while len(pids) < 2:
            assert time.time() < deadline and proc.poll() is None
            try:
                status, info, _ = request(f"{url}/info", headers=key)
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
                continue
            assert status == 200 and (info["max_client_batch_size"], info["max_body_bytes"]) == (3, 4000), info
            pid = request(f"{url}/health")[1]["pid"]  # (/health needs no key)
            if pid in pids:
                continue
            pids.add(pid)
            assert request(f"{url}/fill-mask", {"inputs": "call me [MASK]."})[0] == 401
            status, answer, _ = request(f"{url}/fill-mask", {"inputs": "call me [MASK]."}, headers=key)
            assert status == 200 and len(answer) == 5
            status, error, _ = request(f"{url}/fill-mask", {"inputs": ["a [MASK]."] * 4}, headers=key)
            assert status == 400 and "--max-inputs" in error["error"], error
            status, error, _ = request(f"{url}/fill-mask", {"inputs": "a [MASK] " + "sea " * 2000}, headers=key)
            assert status == 413 and "error" in error, error
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        proc.kill()
