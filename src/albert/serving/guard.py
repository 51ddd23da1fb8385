"""The ASGI middleware in front of every route: the API key, the body's size limit (413 before the body is read,
chunked bodies counted as they come), OPTIONS and HEAD, and each request's metrics."""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from albert.serving.prometheus import Metrics
from albert.serving.serve_settings import ServeSettings
from albert.tasks.registry import TASKS

SMALL_BODY = 64 * 1024  # bodies this small are never held back by the budget of bodies in flight


class BodyBudget:
    """The bytes of request bodies being received at once, all connections of this process together: a body over
    SMALL_BODY reserves its declared length (a chunked one, what has come so far) and gives it back when its request
    ends. Past --max-bodies a request is answered 503 with Retry-After at once, so memory is bounded by the budget
    and not by the number of connections, while small requests (an ordinary query) always pass."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    def take(self, size: int) -> bool:
        if size <= 0:
            return True
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used -= size


class Guard:
    """ASGI middleware: the API key, the body limit (413 before the body is read, chunked bodies counted as
    they come), the budget of bodies in flight (503), and the request metrics."""

    def __init__(self, app: Any, settings: ServeSettings, metrics: Metrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.bodies = BodyBudget(settings.max_bodies)

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        route = scope["path"] if scope["path"] in KNOWN_ROUTES else "other"
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
            await self._within_limits(scope, receive, sending, headers.get("content-length"))
        finally:
            self.metrics.requests.labels(route, str(status_seen["status"])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)


    async def _within_limits(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                             send: Callable[[dict[str, Any]], Awaitable[None]], length: str | None) -> None:
        """The app, its body held to --max-body (413) and to the budget of bodies in flight (503)."""
        limit = self.settings.max_body
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _reply(send, 413, f"the body is {length} bytes; the limit is {limit:,} (--max-body)"
                         if length.isdigit() else "invalid Content-Length", {"connection": "close"})
            return
        seen, held = 0, int(length) if length is not None and int(length) > SMALL_BODY else 0
        if not self.bodies.take(held):
            await self._full(send)
            return

        async def receiving() -> dict[str, Any]:
            nonlocal seen, held
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLarge
                if seen > max(held, SMALL_BODY):  # a chunked body: reserved as it comes
                    if not self.bodies.take(seen - held):
                        raise _NoRoom
                    held = seen
            return message

        try:
            await self.app(scope, receiving, send)
        except _BodyTooLarge:
            await _reply(send, 413, f"the body is over the limit of {limit:,} bytes (--max-body)",
                         {"connection": "close"})
        except _NoRoom:
            await self._full(send)
        finally:
            self.bodies.give(held)

    async def _full(self, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        await _reply(send, 503, f"the server is receiving {self.bodies.used:,} bytes of other bodies (--max-bodies "
                     f"{self.bodies.limit:,}); retry shortly", {"retry-after": "1", "connection": "close"})

    async def _options(self, scope: dict[str, Any], send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        methods = {m for r in scope["app"].router.routes if getattr(r, "path", None) == scope["path"]
                   for m in getattr(r, "methods", ())}
        if not methods:
            await _reply(send, 404, f"no route {scope['path']}")
            return
        await send({"type": "http.response.start", "status": 204,
                    "headers": [(b"allow", ", ".join(sorted(methods | {"OPTIONS"})).encode())]})
        await send({"type": "http.response.body", "body": b""})


KNOWN_ROUTES = {"/", "/health", "/info", "/metrics", "/docs", "/openapi.json", "/embed",
                 *(t.route for t in TASKS.values())}


class _BodyTooLarge(Exception):
    pass


class _NoRoom(Exception):
    """A chunked body grew past what the budget of bodies in flight has left."""


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
