"""The ASGI app of `albert serve` (FastAPI): one pipeline's task at its route and at / (the inference API's shapes),
the routes about the server, the guard, and every error as JSON.

    POST /fill-mask   {"inputs": "The [MASK] sea.", "parameters": {"top_k": 3}}   → the pipeline's answer
    POST /            the same task in the Hugging Face inference API's shapes (InferenceClient points here)
    POST /embed       (feature-extraction) text-embeddings-inference's body: {"inputs", "normalize", "truncate"}
    GET  /health  /info  /metrics  /docs  /openapi.json  and  /  (a page to try the model)

The task's route is its CLI command (albert.tasks.registry). Bodies follow the Hugging Face inference API:
`inputs` is one input or a list (a text, or an object with the task's fields), `parameters` the pipeline's
keyword arguments. A single input gets a single answer; a list gets a list.

One thread owns the model (albert.serving.batcher): requests are batched by count and by tokens, and big
requests take turns with small ones. Every client error is a 4xx with {"error": "one line"}; bodies over the
limit get 413 before they are read (albert.serving.guard).
"""

# No `from __future__ import annotations` here: FastAPI reads the route functions' annotations (Request) as
# objects, and they are imported inside build_app, which is only run where the serve extra is installed.
import asyncio
import dataclasses
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from albert.errors import AlbertError
from albert.io.files import is_array, json_pieces, parse_json
from albert.serving.batcher import Batcher, BatchStats
from albert.serving.guard import Guard
from albert.serving.openapi import description, parameter_info, schemas, use_openapi_models, version
from albert.serving.prometheus import Metrics
from albert.serving.serve_settings import ServeSettings
from albert.serving.shapes import (
    EmbedRouteShape,
    InferenceApiShape,
    PipelineShape,
    Shape,
    TooLarge,
    body_text,
    input_tokens,
)
from albert.tasks.fill_mask import check_fillers
from albert.tasks.registry import Task, defaults, get_task

logger = logging.getLogger(__name__)


def build_app(pipe: Any, task_name: str, settings: ServeSettings, info: dict[str, Any] | None = None
              ) -> tuple[Any, Batcher]:
    """The ASGI app for `pipe` and the batcher that runs it (close it when done): the task's routes in its shapes,
    the routes about the server, the guard (limits, API key) and the errors as JSON."""
    from fastapi import FastAPI

    task = get_task(task_name)
    metrics = Metrics()
    stats = BatchStats(on_batch=metrics.batch)
    # a long input of a task that reads windows runs a model call at a time, between other requests' batches
    steps = getattr(pipe, "steps", None) if task.windows else None
    batcher = Batcher(pipe, settings.max_batch, settings.max_batch_tokens, stats, steps,
                      pipe.model.config.max_position_embeddings)
    details = {"task": task.name, "route": task.route, **(info or {}), "pid": os.getpid()}
    served = Served(pipe, task, settings, batcher, stats, metrics, Shutdown(settings.grace), details, schemas(task))
    app = FastAPI(title=f"albert: {task.name}", version=version(), description=description(task, settings),
                  docs_url="/docs", redoc_url=None, lifespan=served.shutdown.lifespan)
    app.state.shutdown = served.shutdown
    _add_task_routes(app, served)
    _add_server_routes(app, served)
    use_openapi_models(app, served.models)
    app.add_middleware(Guard, settings=settings, metrics=metrics)  # type: ignore[arg-type]
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "X-API-Key"])
    _add_error_handlers(app)
    return app, batcher


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


@dataclasses.dataclass
class Served:
    """What the routes of one app share: the pipeline and its task, the settings, the model's batcher and its
    counts, the app's metrics, the stop's deadline, what /health and /info state, and the OpenAPI models."""

    pipe: Any
    task: Task
    settings: ServeSettings
    batcher: Batcher
    stats: BatchStats
    metrics: Metrics
    shutdown: Shutdown
    details: dict[str, Any]
    models: dict[str, Any]


# answers of more values than this are sent as they are encoded (chunked), not encoded in one go on the event loop:
# the entities of a text of millions of characters take seconds to encode, and every other request would wait
STREAMED_VALUES = 10_000


def _json_response(body: Any) -> Any:
    """Plain JSON (the answers are lists, dicts, strings and floats; FastAPI's encoder would walk them again); a
    long answer streamed in pieces (albert.io.files.json_pieces), each encoded in a worker thread."""
    from fastapi.responses import Response, StreamingResponse

    values = len(body) + sum(len(v) for v in body if is_array(v)) if is_array(body) else 0
    if values <= STREAMED_VALUES:
        return Response("".join(json_pieces(body)).encode(), media_type="application/json")
    return StreamingResponse((piece.encode() for piece in json_pieces(body)), media_type="application/json")


def _json_error(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers=headers)


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


def _add_task_routes(app: Any, served: Served) -> None:
    """POST the task's route (albert's shape, or TEI's where the task has it) and / (the inference API's)."""
    pipe, task, settings, batcher, metrics, shutdown = (served.pipe, served.task, served.settings, served.batcher,
                                                        served.metrics, served.shutdown)
    models = served.models
    from fastapi import Request
    from fastapi.responses import Response

    limit = pipe.model.config.max_position_embeddings

    async def answer(request: Request, shape: Shape) -> Any:
        payload = parse_json(body_text(await request.body()), "the body")
        shape = shape.for_body(payload)
        items, single, parameters = shape.decode(task, payload, settings.max_inputs)
        lengths = [input_tokens(pipe.tokenizer, task, x) for x in items]
        shape.check_lengths(payload, lengths, limit)
        if task.fills_masks:  # its answers multiply: [MASK]s × top_k rebuilt sentences
            texts = [x if isinstance(x, str) else x["text"] for x in items]
            check_fillers(texts, {**defaults(task), **parameters}["top_k"], settings.max_fillers)
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
        return _json_response(shape.encode(task, results, single))

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


def _add_server_routes(app: Any, served: Served) -> None:
    """GET /health, /info, /metrics and the page."""
    pipe, task, settings, batcher, stats, metrics, details = (served.pipe, served.task, served.settings, served.batcher,
                                                              served.stats, served.metrics, served.details)
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
                          "max_bodies_bytes": settings.max_bodies,
                          "grace_seconds": settings.grace, "version": version(),
                          "fields": [dataclasses.asdict(f) for f in task.fields],
                          "parameters": [parameter_info(p) for p in task.parameters], "output": task.output,
                          "example": task.example}

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        metrics.queue.set(batcher.queued_inputs)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse, summary="a page to try the model")
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files("albert.serving").joinpath("page.html").read_text(encoding="utf-8"))


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
        status = 413 if isinstance(e, TooLarge) else 503 if isinstance(e, ShuttingDown) else 400
        return error(status, str(e))

    @app.exception_handler(ClientDisconnect)
    async def gone(_request: Request, _e: ClientDisconnect) -> Response:  # nobody to answer: nothing to log
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def fault(_request: Request, e: Exception) -> JSONResponse:  # a server fault: logged in full
        logger.error("request failed", exc_info=e)
        return error(500, f"internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
