"""`albert serve`: one pipeline behind an ASGI app (FastAPI, served by uvicorn).

    POST /fill-mask   {"inputs": "The [MASK] sea.", "parameters": {"top_k": 3}}   → the pipeline's answer
    POST /            the same task in the Hugging Face inference API's shapes (InferenceClient points here)
    POST /embed       (feature-extraction) text-embeddings-inference's body: {"inputs", "normalize", "truncate"}
    GET  /health  /info  /metrics  /docs  /openapi.json  and  /  (a page to try the model)

The task's route is its CLI command (albert.tasks.registry). Bodies follow the Hugging Face inference API:
`inputs` is one input or a list (a text, or an object with the task's fields), `parameters` the pipeline's
keyword arguments. A single input gets a single answer; a list gets a list.

One thread owns the model (albert.inference.batcher): requests are batched by count and by tokens, and big
requests take turns with small ones. Every client error is a 4xx with {"error": "one line"}; bodies over the
limit get 413 before they are read. It listens on 127.0.0.1 unless told otherwise; with an API key every
route but /health needs it (Authorization: Bearer KEY, X-API-Key, or HTTP basic auth's password).
"""

# No `from __future__ import annotations` here: FastAPI reads the route functions' annotations (Request) as
# objects, and they are imported inside build_app, which is only run where the serve extra is installed.
import asyncio
import dataclasses
import hmac
import importlib.util
import json
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from importlib import resources
from typing import Any, Literal

from albert.data.reader import parse_json
from albert.errors import AlbertError, InputError
from albert.inference.batcher import Batcher, BatchStats
from albert.inference.serve_settings import ServeSettings
from albert.tasks.fill_mask import check_fillers
from albert.tasks.registry import (
    TASKS,
    Parameter,
    Task,
    check_input,
    check_parameters,
    defaults,
    get_task,
    task_of_architecture,
)

logger = logging.getLogger(__name__)

API_KEY_ENV = "ALBERT_API_KEY"
SETTINGS_ENV = "ALBERT_SERVE_SETTINGS"  # the settings, as JSON, for each worker process (--workers N)


def task_for(model: str) -> str:
    """The pipeline task that fits a model directory (`--task auto`)."""
    from albert.checkpoint import saved_architecture, saved_kind

    architecture = saved_architecture(model)
    found = task_of_architecture(architecture, saved_kind(model))
    if found is None:
        raise InputError(f"cannot tell the task of {model} (architecture {architecture}); pass --task")
    return found.name


# ----- what a request costs -----
def input_tokens(tokenizer: Any, task: Task, item: Any) -> int:
    """The tokens of an input with its special tokens (each option's row, for multiple choice), untruncated."""
    texts = [item] if isinstance(item, str) else [v for v in item.values() if isinstance(v, str)]
    options = item.get("options", []) if isinstance(item, dict) else []
    pieces = sum(len(e.ids) for e in tokenizer.encode_pieces(texts)) + 3
    if options:
        pieces = pieces * len(options) + sum(len(e.ids) for e in tokenizer.encode_pieces(options))
    return pieces


# ----- the app -----
class Metrics:
    """Prometheus series of one app (its own registry: several apps in one process do not collide)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("albert_requests", "HTTP requests answered", ["route", "status"],
                                registry=self.registry)
        self.latency = Histogram("albert_request_seconds", "time from request to answer", ["route"],
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
                                 registry=self.registry)
        self.batch_inputs = Histogram("albert_batch_inputs", "inputs per model call",
                                      buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=self.registry)
        self.batch_tokens = Histogram("albert_batch_tokens", "tokens per model call",
                                      buckets=(16, 64, 256, 1024, 4096, 16384, 65536), registry=self.registry)
        self.queue = Gauge("albert_queue_inputs", "inputs waiting for a model call", registry=self.registry)
        self.tokens = Counter("albert_tokens", "tokens put through the model", registry=self.registry)
        self.inputs = Counter("albert_inputs", "inputs answered", registry=self.registry)
        self.passes = Histogram("albert_exit_passes", "passes of the shared layer each input ran, where it may exit "
                                "early (patience or exit_threshold)", buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 48),
                                registry=self.registry)

    def exits(self, results: list[Any]) -> None:
        """Count the passes each answer says it ran (early exit); answers that say none are not counted."""
        for result in results:
            first = result[0] if isinstance(result, list) and result else result
            if isinstance(first, dict) and "passes" in first:
                self.passes.observe(first["passes"])

    def batch(self, inputs: int, tokens: int) -> None:
        self.batch_inputs.observe(inputs)
        self.batch_tokens.observe(tokens)
        self.tokens.inc(tokens)
        self.inputs.inc(inputs)


def build_app(pipe: Any, task_name: str, settings: ServeSettings, info: dict[str, Any] | None = None
              ) -> tuple[Any, Batcher]:
    """The ASGI app for `pipe` and the batcher that runs it (close it when done): the task's routes in its shapes,
    the routes about the server, the guard (limits, API key) and the errors as JSON."""
    from fastapi import FastAPI

    task = get_task(task_name)
    metrics = Metrics()
    stats = BatchStats(on_batch=metrics.batch)
    batcher = Batcher(pipe, settings.max_batch, settings.max_batch_tokens, stats)
    details = {"task": task.name, "route": task.route, **(info or {}), "pid": os.getpid()}
    models = _schemas(task)
    shutdown = Shutdown(settings.grace)
    app = FastAPI(title=f"albert: {task.name}", version=_version(), description=_description(task, settings),
                  docs_url="/docs", redoc_url=None, lifespan=shutdown.lifespan)
    app.state.shutdown = shutdown
    _add_task_routes(app, pipe, task, settings, batcher, metrics, models, shutdown)
    _add_server_routes(app, pipe, task, settings, batcher, stats, metrics, details)
    _use_openapi_models(app, models)
    app.add_middleware(_Guard, settings=settings, metrics=metrics)  # type: ignore[arg-type]
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "X-API-Key"])
    _add_error_handlers(app)
    return app, batcher


def _json_error(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers=headers)


class Shutdown:
    """How a stop ends the requests in flight: on SIGTERM or SIGINT uvicorn stops accepting connections and waits
    for the open ones; each request still waiting for the model `grace` seconds after the signal is answered 503
    (JSON) and its inputs leave the model's queue, so the server exits within grace, with no traceback. The signal
    is seen by wrapping uvicorn's own handler at the app's startup (in every worker process)."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.deadline: asyncio.Event | None = None

    @asynccontextmanager
    async def lifespan(self, _app: Any) -> AsyncIterator[None]:
        self.deadline = asyncio.Event()
        loop = asyncio.get_running_loop()
        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                before = signal.getsignal(sig)

                def handler(number: int, frame: Any, before: Any = before) -> None:
                    loop.call_soon_threadsafe(self.begin)
                    if callable(before):
                        before(number, frame)
                previous[sig] = before
                signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, before in previous.items():
                if signal.getsignal(sig) is not before:
                    signal.signal(sig, before)

    def begin(self) -> None:
        """The stop has begun: the deadline passes a quarter second before `grace` seconds from now (the 503s must
        be written within grace, and the process then exits within another second)."""
        deadline = self.deadline
        if deadline is not None:
            asyncio.get_running_loop().call_later(max(0.0, self.grace - 0.25), deadline.set)

    async def wait(self) -> None:
        if self.deadline is None:  # an app run without its lifespan (tests): never
            await asyncio.Event().wait()
        else:
            await self.deadline.wait()


async def _until_gone(request: Any) -> None:
    """Returns when the client has disconnected (the body was read, so all that can come is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _answers(request: Any, batcher: Batcher, submitted: Any, shutdown: Shutdown) -> Any:
    """The batcher's answers; if the client leaves first, its inputs leave the queue (None); if the stop's
    deadline passes first, the same and a 503."""
    answers = asyncio.ensure_future(asyncio.wrap_future(submitted))
    gone = asyncio.ensure_future(_until_gone(request))
    stop = asyncio.ensure_future(shutdown.wait())
    try:
        await asyncio.wait({answers, gone, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in (gone, stop):
            waiter.cancel()
    if answers.done():
        return answers.result()
    answers.cancel()
    batcher.cancel(submitted)
    if stop.done() and not gone.done():
        raise ShuttingDown(f"the server is stopping and the answer was not ready within --grace "
                           f"({shutdown.grace:g} s)")
    return None


class ShuttingDown(AlbertError):
    """The server stopped before the request's answers were ready (503)."""


def _add_task_routes(app: Any, pipe: Any, task: Task, settings: ServeSettings, batcher: Batcher, metrics: Metrics,
                     models: dict[str, Any], shutdown: Shutdown) -> None:
    """POST the task's route (albert's shape, or TEI's where the task has it) and / (the inference API's)."""
    from fastapi import Request
    from fastapi.responses import Response

    limit = pipe.model.config.max_position_embeddings

    async def answer(request: Request, shape: Shape) -> Any:
        payload = parse_json(_text(await request.body()), "the body")
        shape = shape.for_body(payload)
        items, single, parameters = shape.decode(task, payload, settings.max_inputs)
        lengths = [input_tokens(pipe.tokenizer, task, x) for x in items]
        shape.check_lengths(payload, lengths, limit)
        if task.fills_masks:  # its answers multiply: [MASK]s × top_k rebuilt sentences
            texts = [x if isinstance(x, str) else x["text"] for x in items]
            check_fillers(pipe.tokenizer, texts, {**defaults(task), **parameters}["top_k"], settings.max_fillers)
        # what goes through the model: windows for tasks that read long texts in windows, else the truncated text
        costs = lengths if task.windows else [min(c, limit) for c in lengths]
        metrics.queue.set(batcher.queued_inputs + len(items))
        try:
            results = await _answers(request, batcher, batcher.submit(items, parameters, costs), shutdown)
        finally:
            metrics.queue.set(batcher.queued_inputs)
        if results is None:  # the client has gone: nobody reads an answer
            return Response(status_code=499)
        metrics.exits(results)
        body = shape.encode(task, results, single)
        # plain JSON: the answers are lists, dicts, strings and floats (FastAPI's encoder would walk them again)
        return Response(json.dumps(body, ensure_ascii=False, allow_nan=False).encode(), media_type="application/json")

    request_body = {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{models['request']}"}}},
                    "required": True}
    responses: dict[int | str, dict[str, Any]] = {
        200: {"description": task.output, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{models['response']}"}}}},
        400: {"description": "a malformed request: {\"error\": \"one line\"}"},
        401: {"description": "no or a wrong API key"}, 413: {"description": "the body, or an input, is too large"}}

    route_shape: Shape = EmbedRouteShape() if task.tei else PipelineShape()

    async def task_route(request: Request) -> Any:
        return await answer(request, route_shape)

    async def api_route(request: Request) -> Any:
        return await answer(request, InferenceApiShape())

    summary = (f"{task.name}: {task.help}; text-embeddings-inference's body ({{inputs, normalize, truncate}}) or the "
               "pipeline's ({inputs, parameters})" if task.tei else f"{task.name}: {task.help}")
    body_model = models["tei"] if task.tei else models["request"]
    app.add_api_route(task.route, task_route, methods=["POST"], summary=summary, responses=responses,
                      openapi_extra={"requestBody": {"content": {"application/json": {"schema": {
                          "$ref": f"#/components/schemas/{body_model}"}}}, "required": True}})
    app.add_api_route("/", api_route, methods=["POST"], summary=f"{task.name} in the Hugging Face inference API's "
                      "shapes (for huggingface_hub.InferenceClient)",
                      openapi_extra={"requestBody": request_body}, responses=responses)



def _add_server_routes(app: Any, pipe: Any, task: Task, settings: ServeSettings, batcher: Batcher,
                       stats: BatchStats, metrics: Metrics, details: dict[str, Any]) -> None:
    """GET /health, /info, /metrics and the page."""
    from fastapi.responses import HTMLResponse, Response

    limit = pipe.model.config.max_position_embeddings

    @app.get("/health", summary="liveness: the model, and how much batching it has done")
    async def health() -> dict[str, Any]:
        return details | {"status": "ok", "requests": stats.requests, "batches": stats.batches,
                          "queued_inputs": batcher.queued_inputs}

    @app.get("/info", summary="the model and the server's limits (text-embeddings-inference's /info)")
    async def server_info() -> dict[str, Any]:
        return details | {"model_id": details.get("model"), "model_dtype": details.get("precision"),
                          "max_input_length": limit, "max_batch_tokens": settings.max_batch_tokens,
                          "max_client_batch_size": settings.max_inputs, "max_concurrent_requests": None,
                          "max_batch_requests": settings.max_batch, "max_body_bytes": settings.max_body,
                          "grace_seconds": settings.grace, "version": _version(),
                          "fields": [dataclasses.asdict(f) for f in task.fields],
                          "parameters": [_parameter_info(p) for p in task.parameters], "output": task.output,
                          "example": task.example}

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        metrics.queue.set(batcher.queued_inputs)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse, summary="a page to try the model")
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files("albert.inference").joinpath("page.html").read_text(encoding="utf-8"))


def _use_openapi_models(app: Any, models: dict[str, Any]) -> None:
    """The OpenAPI document, with the task's request and response models (built from the registry)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(models["schemas"])
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_error_handlers(app: Any) -> None:
    """Every error a JSON body {"error": "one line"}: 4xx for what the client sent, 500 (logged in full) for a fault."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect

    error = _json_error

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, e: HTTPException) -> JSONResponse:
        return error(e.status_code, str(e.detail), getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        return error(400, f"{'.'.join(map(str, first.get('loc', [])))}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(AlbertError)
    async def bad_input(_request: Request, e: AlbertError) -> JSONResponse:
        status = 413 if isinstance(e, _TooLarge) else 503 if isinstance(e, ShuttingDown) else 400
        return error(status, str(e))

    @app.exception_handler(ClientDisconnect)
    async def gone(_request: Request, _e: ClientDisconnect) -> Response:  # nobody to answer: nothing to log
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def fault(_request: Request, e: Exception) -> JSONResponse:  # a server fault: logged in full
        logger.error("request failed", exc_info=e)
        return error(500, f"internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")


class _TooLarge(InputError):
    """An input longer than the model reads, where the caller asked not to truncate (413)."""


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"the body is not UTF-8 (byte {e.start})") from None


# ----- the request and response shapes (litgpt's LitAPI: one small class per API, its own decode and encode) -----
class Shape:
    """albert's own shape: {"inputs": one input or a list, "parameters": the pipeline's keyword arguments}; the
    answer is one input's answer, or a list of them."""

    def for_body(self, payload: Any) -> "Shape":
        """The shape that reads this body (a route may take two)."""
        return self

    def options(self, task: Task, payload: dict[str, Any]) -> Any:
        unknown = set(payload) - {"inputs", "parameters", "options"}
        if unknown:
            raise InputError(f"unknown key(s) {', '.join(sorted(unknown))}: the body takes 'inputs' and 'parameters'")
        return payload.get("parameters") or {}

    def decode(self, task: Task, payload: Any, max_inputs: int) -> tuple[list[Any], bool, dict[str, Any]]:
        """(inputs, whether one input was sent rather than a list, parameters) of a request body."""
        if not isinstance(payload, dict) or "inputs" not in payload:
            raise InputError('the body must be a JSON object with "inputs" (and optionally "parameters")')
        parameters = self.options(task, payload)
        raw = payload["inputs"]
        single = not isinstance(raw, list)
        items = [raw] if single else raw
        if not items:
            raise InputError("'inputs' is an empty list")
        if len(items) > max_inputs:
            raise InputError(f"{len(items):,} inputs in one request; the limit is {max_inputs:,} (--max-inputs)")
        checked = [check_input(task, x, n) for n, x in enumerate(items, 1)]
        return checked, single, check_parameters(task, parameters)

    def check_lengths(self, payload: dict[str, Any], lengths: list[int], limit: int) -> None:
        """Inputs longer than the model reads are truncated (or windowed), unless a shape says otherwise."""

    def encode(self, task: Task, results: list[Any], single: bool) -> Any:
        return results[0] if single else results


class PipelineShape(Shape):
    """albert's own shape, as the pipelines take and give it."""


class InferenceApiShape(Shape):
    """The Hugging Face inference API's shapes (huggingface_hub.InferenceClient): its parameter names, options sent
    beside "inputs" where the task's API does so, and each input's answer nested in a list where it nests them."""

    def options(self, task: Task, payload: dict[str, Any]) -> Any:
        if task.api_options_top_level:
            parameters = {k: v for k, v in payload.items() if k not in ("inputs", "parameters")}
            parameters |= payload.get("parameters") or {}
            parameters.pop("truncate", None)  # the pipeline always truncates at the model's limit
        else:
            parameters = super().options(task, payload)
        if not isinstance(parameters, dict):
            return parameters  # (check_parameters says what is wrong with it)
        renamed = {"max_answer_len": "max_answer_length"}
        out = {renamed.get(k, k): v for k, v in parameters.items()}
        if task.api_nests_answers and "top_k" not in out:
            out["top_k"] = None  # the API lists every label unless told otherwise
        return out

    def encode(self, task: Task, results: list[Any], single: bool) -> Any:
        if task.api_nests_answers:
            return [r if isinstance(r, list) else [r] for r in results]
        return super().encode(task, results, single)


class TeiShape(Shape):
    """text-embeddings-inference's /embed: {inputs, normalize (default true), truncate (default false: an input
    longer than the model is refused, 413)}; always a list of vectors."""

    def options(self, task: Task, payload: dict[str, Any]) -> Any:
        unknown = set(payload) - {"inputs", "normalize", "truncate", "truncation_direction", "prompt_name"}
        if unknown:
            raise InputError(f"unknown key(s) {', '.join(sorted(unknown))}: /embed takes inputs, normalize, truncate")
        normalize = payload.get("normalize", True)
        if not isinstance(normalize, bool) or not isinstance(payload.get("truncate", False), bool):
            raise InputError("normalize and truncate must be true or false")
        if payload.get("truncation_direction", "right") not in ("right", "Right"):
            raise InputError("only truncation_direction 'right' is supported")
        if payload.get("prompt_name") is not None:
            raise InputError("prompt_name is not supported (albert models have no prompts)")
        return {"normalize": normalize}

    def check_lengths(self, payload: dict[str, Any], lengths: list[int], limit: int) -> None:
        if payload.get("truncate", False):
            return
        too_long = next((n for n, c in enumerate(lengths, 1) if c > limit), None)
        if too_long is not None:
            raise _TooLarge(f"input {too_long} has {lengths[too_long - 1]} tokens; the model reads at most "
                            f"{limit} (send \"truncate\": true)")

    def encode(self, task: Task, results: list[Any], single: bool) -> Any:
        return results  # always a list of vectors


class EmbedRouteShape(Shape):
    """A TEI task's own route (/embed): TEI's body, or the pipeline's when it sends "parameters"."""

    def for_body(self, payload: Any) -> "Shape":
        return PipelineShape() if isinstance(payload, dict) and "parameters" in payload else TeiShape()


class _Guard:
    """ASGI middleware: the API key, the body limit (413 before the body is read, chunked bodies counted as
    they come), and the request metrics."""

    def __init__(self, app: Any, settings: ServeSettings, metrics: Metrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        route = scope["path"] if scope["path"] in _KNOWN_ROUTES else "other"
        status_seen = {"status": 500}

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_seen["status"] = message["status"]
            await send(message)

        try:
            if scope["method"] == "OPTIONS":  # what the path answers (CORS preflights are the CORS layer's)
                await self._options(scope, sending)
                return
            if scope["method"] == "HEAD":  # a GET without its body
                scope = dict(scope, method="GET")
                head_send = sending

                async def sending(message: dict[str, Any]) -> None:
                    if message["type"] == "http.response.body":
                        message = dict(message, body=b"")
                    await head_send(message)

            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            key = self.settings.api_key
            if key and scope["path"] != "/health" and scope["method"] != "OPTIONS" and not _authorised(headers, key):
                await _reply(sending, 401, "a valid API key is needed (Authorization: Bearer KEY)",
                             {"www-authenticate": 'Basic realm="albert"'})
                return
            length = headers.get("content-length")
            limit = self.settings.max_body
            if length is not None and (not length.isdigit() or int(length) > limit):
                await _reply(sending, 413, f"the body is {length} bytes; the limit is {limit:,} (--max-body)"
                             if length.isdigit() else "invalid Content-Length", {"connection": "close"})
                return
            seen = 0

            async def receiving() -> dict[str, Any]:
                nonlocal seen
                message = await receive()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > limit:
                        raise _BodyTooLarge
                return message

            try:
                await self.app(scope, receiving, sending)
            except _BodyTooLarge:
                await _reply(sending, 413, f"the body is over the limit of {limit:,} bytes (--max-body)",
                             {"connection": "close"})
        finally:
            self.metrics.requests.labels(route, str(status_seen["status"])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)


    async def _options(self, scope: dict[str, Any], send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        methods = {m for r in scope["app"].router.routes if getattr(r, "path", None) == scope["path"]
                   for m in getattr(r, "methods", ())}
        if not methods:
            await _reply(send, 404, f"no route {scope['path']}")
            return
        await send({"type": "http.response.start", "status": 204,
                    "headers": [(b"allow", ", ".join(sorted(methods | {"OPTIONS"})).encode())]})
        await send({"type": "http.response.body", "body": b""})


_KNOWN_ROUTES = {"/", "/health", "/info", "/metrics", "/docs", "/openapi.json", "/embed",
                 *(t.route for t in TASKS.values())}


class _BodyTooLarge(Exception):
    pass


def _authorised(headers: dict[str, str], key: str) -> bool:
    import base64

    # headers arrive as bytes (decoded as Latin-1 here, which keeps every byte): a key with non-ASCII characters is
    # compared as the UTF-8 bytes clients send for it
    given = headers.get("x-api-key", "").encode("latin-1")
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        given = value.strip().encode("latin-1")
    elif scheme.lower() == "basic":  # a browser's login prompt: the key is the password
        try:
            given = base64.b64decode(value.strip()).partition(b":")[2]
        except ValueError:
            given = b""
    return bool(given) and hmac.compare_digest(given, key.encode("utf-8"))


async def _reply(send: Callable[[dict[str, Any]], Awaitable[None]], status: int, message: str,
                 headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *extra]})
    await send({"type": "http.response.body", "body": body})


# ----- OpenAPI models, from the registry -----
def _schemas(task: Task) -> dict[str, Any]:
    """Pydantic models of the task's request and response bodies, as OpenAPI component schemas."""
    from pydantic import ConfigDict, Field, RootModel, TypeAdapter, create_model

    prefix = "".join(w.title() for w in task.name.split("-"))

    def field_type(kind: str) -> Any:
        return list[str] if kind == "options" else str

    input_model = create_model(f"{prefix}Input", __config__=ConfigDict(extra="allow"), **{  # type: ignore[call-overload]
        f.name: (field_type(f.kind), Field(... if f.required else None, description=f.help)) for f in task.fields})
    parameter_model = create_model(f"{prefix}Parameters", __config__=ConfigDict(extra="forbid"), **{  # type: ignore[call-overload]
        p.name: (_parameter_type(p) | None, Field(p.default, description=p.help)) for p in task.parameters})
    one: Any = str | input_model if task.takes_text else input_model
    request = create_model(f"{prefix}Request", inputs=(one | list[one], Field(..., description="one input or a list")),
                           parameters=(parameter_model | None, None))
    one_answer = _answer_model(task, prefix)
    response = create_model(f"{prefix}Response", __base__=RootModel[one_answer | list[one_answer]])  # type: ignore[valid-type]
    response.__doc__ = task.output
    models: list[Any] = [request, response]
    names = {"request": request.__name__, "response": response.__name__}
    if task.tei:
        tei = create_model("EmbedRequest", inputs=(str | list[str], ...), normalize=(bool, True),
                           truncate=(bool, False))
        models.append(tei)
        names["tei"] = tei.__name__
    schemas: dict[str, Any] = {}
    for model in models:
        schema = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return {**names, "schemas": schemas}


_ANSWER_TYPES: dict[str, Any] = {"float": float, "int": int, "str": str, "list[float]": list[float]}


def _answer_model(task: Task, prefix: str) -> Any:
    """One input's answer, as a model for the docs, from the task's registry entry (the pipelines build the answers;
    this only describes them)."""
    from pydantic import create_model

    if task.answer_form == "vector":
        return list[float]
    name = prefix + "Answer"
    one = create_model(name, **{k: (_ANSWER_TYPES[t.rstrip("?")] | None, None) if t.endswith("?")  # type: ignore[call-overload]
                                else (_ANSWER_TYPES[t], ...) for k, t in task.answer})
    if task.answer_form == "list":
        return list[one]  # type: ignore[valid-type]
    if task.answer_form == "one_or_list":
        return one | list[one]  # type: ignore[valid-type]
    if task.answer_form == "list_or_lists":
        return list[one] | list[list[one]]  # type: ignore[valid-type]
    return one


def _parameter_type(p: Parameter) -> Any:
    if isinstance(p.type, tuple):
        return Literal[p.type]  # type: ignore[valid-type]
    return p.type


def _parameter_info(p: Parameter) -> dict[str, Any]:
    kind = list(p.type) if isinstance(p.type, tuple) else p.type.__name__
    return {"name": p.name, "type": kind, "default": p.default, "help": p.help, "maximum": p.maximum,
            "minimum": p.minimum}


def _description(task: Task, settings: ServeSettings) -> str:
    return (f"{task.help}. POST {task.route} takes {{inputs, parameters}}; the answer per input is {task.output}. "
            f"Limits: {settings.max_inputs:,} inputs and {settings.max_body:,} bytes per request; batches of "
            f"{settings.max_batch} inputs or {settings.max_batch_tokens:,} tokens.")


def _version() -> str:
    from albert.version import __version__

    return __version__


# ----- running it -----
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
    """uvicorn's settings for albert: its HTTP limits (albert.inference.http_limits, where httptools is there),
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
    """albert's HTTP protocol with the settings' limits, in this process (albert.inference.http_limits)."""
    from albert.inference.http_limits import HttpLimits, configure

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
        config = uvicorn_config("albert.inference.server:app_from_environment", settings, factory=True,
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
