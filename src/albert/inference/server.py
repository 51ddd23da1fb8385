"""`albert serve`: one pipeline behind HTTP, JSON in and out.

    POST /fill-mask   {"inputs": "The [MASK] sea.", "parameters": {"top_k": 3}}   → the pipeline's answer
    GET  /health      → {"status": "ok", "task": ..., "model": ..., ...}

The request body follows the Hugging Face inference API: `inputs` is one input or a list of them, in the
shapes the CLI reads (a text, or an object with the task's fields), and `parameters` are the pipeline's
keyword arguments. A single input gets a single answer; a list gets a list.

Requests are answered by one worker thread that owns the model: whatever requests arrived while it was busy
run together as one pipeline call (same parameters, up to `max_batch` inputs), so concurrent clients share
batched forward passes instead of queueing one by one, and no request waits for a batch to fill. A batch
that fails is re-run request by request, so one bad input fails only its own request. Malformed requests
get status 400 with {"error": "one line"}.
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from albert.errors import AlbertError, InputError
from albert.tasks.registry import TASKS, check_input, check_parameters, get_task, task_of_architecture

logger = logging.getLogger(__name__)

MAX_BODY = 16 * 1024 * 1024
# what a caller can get wrong: reported to that caller as status 400, never as a server fault
BAD_INPUT: tuple[type[Exception], ...] = (AlbertError,)


@dataclass
class _Request:
    items: list[Any]
    parameters: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: list[Any] | None = None
    error: Exception | None = None


class Batcher:
    """Runs `run(items, **parameters)` on one thread; requests queued meanwhile are run together."""

    def __init__(self, run: Callable[..., list[Any]], max_batch: int = 64) -> None:
        self.run = run
        self.max_batch = max_batch
        self.queue: queue.Queue[_Request | None] = queue.Queue()
        self.batches = 0  # forward calls made, for /health: requests ÷ batches is the batching achieved
        self.requests = 0
        self.thread = threading.Thread(target=self._loop, name="albert-model", daemon=True)
        self.thread.start()

    def __call__(self, items: list[Any], parameters: dict[str, Any]) -> list[Any]:
        request = _Request(items, parameters)
        self.queue.put(request)
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()

    def _loop(self) -> None:
        held: _Request | None = None  # taken from the queue but too big for the batch before: first of the next
        stopping = False
        while True:
            first: _Request | None
            if held is not None:
                first, held = held, None
            elif stopping:
                return
            else:
                first = self.queue.get()
            if first is None:
                return
            waiting = [first]
            size = len(first.items)
            while size < self.max_batch:  # take what is already queued; never wait for more
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:  # close(): stop after this batch
                    stopping = True
                    break
                if size + len(nxt.items) > self.max_batch:
                    held = nxt
                    break
                waiting.append(nxt)
                size += len(nxt.items)
            groups: dict[str, list[_Request]] = {}
            for r in waiting:
                groups.setdefault(json.dumps(r.parameters, sort_keys=True), []).append(r)
            for group in groups.values():
                self._answer(group)

    def _answer(self, group: list[_Request]) -> None:
        try:
            self.batches += 1
            results = self.run([x for r in group for x in r.items], **group[0].parameters)
        except Exception as e:  # noqa: BLE001 - handed to the waiting request(s), never lost
            if len(group) > 1:  # find the request at fault: the others still get their answers
                for r in group:
                    self._answer([r])
                return
            group[0].error = e
            group[0].done.set()
            return
        start = 0
        for r in group:
            r.result = results[start:start + len(r.items)]
            start += len(r.items)
            self.requests += 1
            r.done.set()


def parse_request(task: str, body: bytes) -> tuple[list[Any], bool, dict[str, Any]]:
    """(inputs, whether one input was sent rather than a list, parameters) of a request body."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"invalid JSON ({getattr(e, 'msg', e)})") from None
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise InputError('the body must be a JSON object with "inputs" (and optionally "parameters")')
    unknown = set(payload) - {"inputs", "parameters"}
    if unknown:
        raise InputError(f"unknown key(s) {', '.join(sorted(unknown))}: the body takes 'inputs' and 'parameters'")
    raw = payload["inputs"]
    single = not isinstance(raw, list)
    items = [raw] if single else raw
    if not items:
        raise InputError("'inputs' is an empty list")
    checked = [check_input(TASKS[task], x, n) for n, x in enumerate(items, 1)]
    return checked, single, check_parameters(TASKS[task], payload.get("parameters", {}))


def make_handler(task: str, answer: Batcher, info: dict[str, Any]) -> type[BaseHTTPRequestHandler]:
    path = TASKS[task].route

    class Handler(BaseHTTPRequestHandler):
        server_version = "albert"
        protocol_version = "HTTP/1.1"  # keep-alive: a client's requests reuse one connection
        timeout = 60  # seconds a connection may stay silent (idle keep-alive, or a body that never comes)

        def _send(self, status: int, payload: Any) -> None:
            body = json.dumps(payload, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": message})

        def do_GET(self) -> None:  # noqa: N802 - the http.server interface
            if self.path == "/health":
                self._send(200, info | {"status": "ok", "requests": answer.requests, "batches": answer.batches})
            else:
                self._error(404, f"no GET {self.path}: this server answers POST {path} and GET /health")

        def do_POST(self) -> None:  # noqa: N802
            with self.server.busy:  # type: ignore[attr-defined]
                self._post()

        def _post(self) -> None:
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self.close_connection = True
                self._error(411, "a Content-Length header is needed")
                return
            if int(length) > MAX_BODY:
                self.close_connection = True  # the body is not read: the connection cannot be reused
                self._error(413, f"the body is {int(length):,} bytes; the limit is {MAX_BODY:,}")
                return
            body = self.rfile.read(int(length))
            if self.path != path:
                self._error(404, f"no POST {self.path}: this server answers POST {path} ({task})")
                return
            try:
                items, single, parameters = parse_request(task, body)
                results = answer(items, parameters)
            except BAD_INPUT as e:
                self._error(400, str(e))
                return
            except Exception as e:  # noqa: BLE001 - a server fault: logged in full, one line to the caller
                logger.exception("request failed")
                self._error(500, f"internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                return
            self._send(200, results[0] if single else results)

        def do_PUT(self) -> None:  # noqa: N802
            self._error(405, f"use POST {path}")

        do_DELETE = do_PATCH = do_PUT  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the http.server signature
            logger.info("%s %s", self.address_string(), format % args)

    return Handler


class InFlight:
    """Counts the requests being answered, so that a shutdown can let them finish."""

    def __init__(self) -> None:
        self.count = 0
        self.cond = threading.Condition()

    def __enter__(self) -> None:
        with self.cond:
            self.count += 1

    def __exit__(self, *_: Any) -> None:
        with self.cond:
            self.count -= 1
            self.cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.count == 0, timeout)


class Server(ThreadingHTTPServer):
    daemon_threads = True  # a client that keeps its connection open (idle) does not hold up the shutdown
    # connections not yet accepted; the default (5) resets them when many clients connect at once
    request_queue_size = 256

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.busy = InFlight()
        super().__init__(*args, **kwargs)


def task_for(model: str) -> str:
    """The pipeline task that fits a model directory (`--task auto`)."""
    from albert.checkpoint import saved_architecture

    architecture = saved_architecture(model)
    found = task_of_architecture(architecture)
    if found is None:
        raise InputError(f"cannot tell the task of {model} (architecture {architecture}); pass --task")
    return found.name


def check_settings(task: str, port: int, max_batch: int) -> None:
    """Errors in the server's settings, found before a model is loaded for it."""
    get_task(task)
    if not 0 <= port <= 65535:
        raise InputError(f"--port must be 0-65535, got {port}")
    if max_batch < 1:
        raise InputError(f"--max-batch must be >= 1, got {max_batch}")


def build_server(pipe: Callable[..., list[Any]], task: str, host: str, port: int, max_batch: int = 64,
                 info: dict[str, Any] | None = None) -> tuple[Server, Batcher]:
    """An HTTP server for `pipe` (not yet serving: call serve_forever); port 0 picks a free port."""
    check_settings(task, port, max_batch)
    batcher = Batcher(pipe, max_batch)
    details = {"task": task, "endpoint": TASKS[task].route} | (info or {})
    try:
        server = Server((host, port), make_handler(task, batcher, details))
    except OSError as e:
        batcher.close()
        raise InputError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return server, batcher


def serve(pipe: Any, task: str, host: str = "127.0.0.1", port: int = 8000, max_batch: int = 64,
          info: dict[str, Any] | None = None) -> None:
    """Serve until SIGINT or SIGTERM; requests in flight are answered before it stops."""
    server, batcher = build_server(pipe, task, host, port, max_batch, info)
    stop = threading.Event()

    def shutdown(*_: Any) -> None:
        if not stop.is_set():
            stop.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    host_shown, port_shown = str(server.server_address[0]), server.server_address[1]
    print(f"albert serve: {task} on http://{host_shown}:{port_shown}{TASKS[task].route} (GET /health); "
          f"Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()  # no new connections; requests already being answered get their answers
        if not server.busy.wait_idle(timeout=120):
            logger.warning("stopping with %d request(s) unanswered after 120 s", server.busy.count)
        batcher.close()
    print("albert serve: stopped", flush=True)


def serve_model(model: str, task: str = "auto", host: str = "127.0.0.1", port: int = 8000, max_batch: int = 64,
                device: str = "auto", precision: str = "auto", compile: bool = False) -> None:
    """`albert serve`: the model's pipeline (task auto: the one its directory was fine-tuned for) over HTTP."""
    from albert.inference.pipelines import pipeline

    task = task_for(model) if task == "auto" else get_task(task).name
    check_settings(task, port, max_batch)  # before the model loads
    pipe = pipeline(task, model=model, device=device, precision=precision, compile=compile)
    info = {"model": str(model), "device": str(pipe.device), "precision": pipe.runtime.precision}
    serve(pipe, task, host, port, max_batch, info)
