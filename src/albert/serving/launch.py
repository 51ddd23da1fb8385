"""Running the app: `albert serve` (uvicorn, one process or --workers N), and `running` for tests and benchmarks.
It listens on 127.0.0.1 unless told otherwise; with an API key every route but /health needs it (Authorization:
Bearer KEY, X-API-Key, or HTTP basic auth's password)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from albert.errors import InputError
from albert.serving.app import build_app
from albert.serving.batcher import Batcher
from albert.serving.serve_settings import ServeSettings
from albert.tasks.registry import TASKS, get_task, task_of_architecture

__all__ = ["ServeSettings", "build_app", "load_app", "running", "serve_model", "task_for"]

API_KEY_ENV = "ALBERT_API_KEY"
SETTINGS_ENV = "ALBERT_SERVE_SETTINGS"  # the settings, as JSON, for each worker process (--workers N)


def task_for(model: str) -> str:
    """The pipeline task that fits a model directory (`--task auto`)."""
    from albert.modeling.pretrained import saved_architecture, saved_kind

    architecture = saved_architecture(model)
    found = task_of_architecture(architecture, saved_kind(model))
    if found is None:
        raise InputError(f"cannot tell the task of {model} (architecture {architecture}); pass --task")
    return found.name


def load_app(settings: ServeSettings) -> tuple[Any, Batcher, str]:
    """The model's pipeline and its app (task auto: the one the directory was fine-tuned for)."""
    from albert.inference.pipelines import pipeline

    task = task_for(settings.model) if settings.task == "auto" else get_task(settings.task).name
    pipe = pipeline(task, model=settings.model, device=settings.device, precision=settings.precision,
                    compile=settings.compile)
    if settings.compile:
        # before the first request, not on it: each compilation takes up to a minute, and the model's thread
        # would answer nothing meanwhile
        print("albert serve: compiling the model for each kind of batch (--compile: up to 4 compilations, up to a "
              "minute each)", file=sys.stderr, flush=True)
        pipe.warm_up()
    info = {"model": str(settings.model), "device": str(pipe.device), "precision": pipe.runtime.precision}
    app, batcher = build_app(pipe, task, settings, info)
    return app, batcher, task


def app_from_environment() -> Any:
    """The app of one worker process (`--workers N`): settings from ALBERT_SERVE_SETTINGS."""
    values = json.loads(os.environ[SETTINGS_ENV])
    values["cors_origins"] = tuple(values.get("cors_origins", ()))
    settings = ServeSettings(**values)
    if importlib.util.find_spec("httptools") is not None:
        _http_protocol(settings)  # this worker's connections' limits
    app, _, _ = load_app(settings)
    return app


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the model loads: a port in use is one line, not a traceback later."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app: Any, settings: ServeSettings, **kw: Any) -> Any:
    """uvicorn's settings for albert: its HTTP limits (albert.serving.http_limits, where httptools is there),
    the grace of a stop, a short keep-alive, no access log."""
    import uvicorn

    if importlib.util.find_spec("httptools") is not None:
        kw.setdefault("http", _http_protocol(settings))
    else:  # uvicorn's h11 parser: it bounds the headers' bytes itself (its errors are plain text)
        kw.setdefault("h11_max_incomplete_event_size", settings.max_header_bytes)

    # uvicorn's own deadline comes a second after albert's (Shutdown): requests still waiting are answered 503 by
    # albert, not cancelled by uvicorn (a 500 in plain text and a traceback)
    return uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=math.ceil(settings.grace) + 1,
                          timeout_keep_alive=5, access_log=False, limit_max_requests=None, **kw)


def _http_protocol(settings: ServeSettings) -> type:
    """albert's HTTP protocol with the settings' limits, in this process (albert.serving.http_limits)."""
    from albert.serving.http_limits import HttpLimits, configure

    return configure(HttpLimits(settings.max_header_bytes, settings.max_headers, settings.header_timeout,
                                settings.body_timeout))


@contextmanager
def running(app: Any, settings: ServeSettings | None = None, port: int = 0) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 from a thread for as long as the block runs (tests, benchmarks); its base URL."""
    import uvicorn

    settings = settings or ServeSettings()
    sock = bind("127.0.0.1", port)
    server = uvicorn.Server(uvicorn_config(app, settings))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def serve_model(settings: ServeSettings) -> None:
    """`albert serve`: serve until SIGINT or SIGTERM; requests in flight are answered first (within --grace s)."""
    settings.check()
    missing = [m for m in ("fastapi", "uvicorn", "prometheus_client") if importlib.util.find_spec(m) is None]
    if missing:
        raise InputError(f"albert serve needs {', '.join(missing)}: pip install 'albert-lm[serve]'")
    import uvicorn

    if settings.api_key is None and os.environ.get(API_KEY_ENV):
        settings = dataclasses.replace(settings, api_key=os.environ[API_KEY_ENV])
    sock = bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    if settings.workers > 1:
        task = task_for(settings.model) if settings.task == "auto" else get_task(settings.task).name
        os.environ[SETTINGS_ENV] = json.dumps(dataclasses.asdict(settings) | {"task": task})
        config = uvicorn_config("albert.serving.launch:app_from_environment", settings, factory=True,
                                workers=settings.workers)
        _announce(task, host, port, settings)
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, sockets=[sock]).run()  # each worker loads its own model
    else:
        app, batcher, task = load_app(settings)
        server = uvicorn.Server(uvicorn_config(app, settings))
        _announce(task, host, port, settings)
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again for the handler that was
        # there before it: a no-op one here, so a requested stop ends in "stopped" and exit status 0
        previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            server.run(sockets=[sock])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            batcher.close(wait=False)  # what was asked has been answered (or refused, past --grace)
            batcher.thread.join(timeout=0.5)
    print("albert serve: stopped", flush=True)


def _announce(task: str, host: str, port: int, settings: ServeSettings) -> None:
    import ipaddress

    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not settings.api_key:
        print(f"albert serve: warning: listening on {host} without an API key: anyone who reaches this port can "
              "use the model (--api-key or $ALBERT_API_KEY)", file=sys.stderr, flush=True)
    shown = f"[{host}]" if ":" in host else host
    key = "; API key required" if settings.api_key else ""
    print(f"albert serve: {task} on http://{shown}:{port}{TASKS[task].route} (page /, docs /docs, GET /health, "
          f"/metrics{key}); {settings.workers} worker(s); Ctrl-C stops", flush=True)
