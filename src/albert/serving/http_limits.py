"""HTTP/1.1 limits below the app, where uvicorn's parser has none: the request line and headers (bytes and count),
the time to receive them and the body, and parser errors answered as JSON.

uvicorn's httptools protocol buffers a header until it ends, never times out a connection that sends half its
headers, and answers malformed requests (a CR or NUL in a header, two Content-Lengths, an unknown method) in plain
text. Here every such request is answered `{"error": ...}` with 431, 408 or 400 and the connection closed:
- the request line and headers over `max_header_bytes` in all, or more than `max_headers` of them: 431;
- headers not complete `header_timeout` seconds after the request began, or its body not complete `body_timeout`
  seconds after the headers: 408;
- anything httptools refuses: 400.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    header_timeout: float = 10.0
    body_timeout: float = 60.0


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with `limits` (uvicorn.Config(http=LimitedHttpProtocol)). A module-level
    class, so that uvicorn can hand it to worker processes; `configure` sets its limits in each process."""

    limits: ClassVar[HttpLimits] = HttpLimits()
    _timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._begin_message()

    def _begin_message(self) -> None:
        self._header_bytes = 0
        self._header_count = 0
        self._in_headers = True
        self._arm(self.limits.header_timeout, "the request's headers did not arrive within "
                  f"{self.limits.header_timeout:g} s")

    def _arm(self, seconds: float, why: str) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._refuse, 408, why)

    def _disarm(self) -> None:
        timer = getattr(self, "_timer", None)
        if timer is not None:
            timer.cancel()
            self._timer = None

    def _refuse(self, status: int, why: str) -> None:
        """Answer `status` with a JSON error and close, unless a response has begun on this connection."""
        self._disarm()
        if getattr(self, "_discarding", False):
            return
        if self.transport.is_closing() or (self.cycle is not None and self.cycle.response_started):
            if not self.transport.is_closing():
                self.transport.close()
            return
        body = json.dumps({"error": why}).encode()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-type: application/json\r\ncontent-length: ", str(len(body)).encode(),
                 b"\r\nconnection: close\r\n\r\n", body]
        self.transport.write(b"".join(head))
        # a lingering close: what the client is still sending is read and dropped for a moment, so that its
        # kernel does not reset the connection before it has read the answer
        self._discarding = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(1.0, self.transport.close)
        if self.cycle is not None:
            self.cycle.disconnected = True
            self.cycle.message_event.set()

    def data_received(self, data: bytes) -> None:
        if getattr(self, "_discarding", False):
            return
        if self._in_headers:
            self._header_bytes += len(data)
            if self._header_bytes > self.limits.max_header_bytes + 65536:  # far past: not even parsed
                self._refuse(431, f"the request line and headers are over {self.limits.max_header_bytes:,} bytes")
                return
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, f"malformed HTTP request ({msg.rstrip('.').lower()})")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if getattr(self, "_timer", None) is None:  # a later request on a kept-alive connection
            self._begin_message()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._check_header_size(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            self._refuse(431, f"more than {self.limits.max_headers} headers")
            raise httptools.HttpParserCallbackError("too many headers")
        self._check_header_size(len(name) + len(value) + 4)

    def _check_header_size(self, n: int) -> None:
        self._parsed_bytes = getattr(self, "_parsed_bytes", 0) + n
        if self._parsed_bytes > self.limits.max_header_bytes:
            self._refuse(431, f"the request line and headers are over {self.limits.max_header_bytes:,} bytes")
            raise httptools.HttpParserCallbackError("headers too large")

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._parsed_bytes = 0
        self._arm(self.limits.body_timeout,
                  f"the request's body did not arrive within {self.limits.body_timeout:g} s")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()
        self._header_bytes = 0
        self._header_count = 0
        self._in_headers = True  # the next request on this connection (its timer starts at its first byte)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def configure(limits: HttpLimits) -> type[asyncio.Protocol]:
    """Set the limits of this process's connections; the protocol class to give uvicorn."""
    LimitedHttpProtocol.limits = limits
    return LimitedHttpProtocol
