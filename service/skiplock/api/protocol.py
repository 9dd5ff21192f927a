"""The HTTP protocol `serve` runs: uvicorn's httptools one, with a bound on a request's head.

httptools (llhttp) puts no limit on the request line and headers: it collects a header
value of any length (uvicorn's `h11_max_incomplete_event_size` applies to h11 only), so 60
requests with a 5 MB Authorization header took `serve` from 48 to 454 MiB. Here a request
whose head (line and headers) passes SKIPLOCK_HTTP_MAX_HEADER_BYTES is answered 431 in the
API's error shape and its connection closed:

- a head still arriving is cut off as soon as the bytes received for it pass the limit,
  so the parser holds at most the limit plus one read (asyncio reads 256 KiB at most);
- a complete head is measured from the parsed URL and headers, and answered 431 by a tiny
  ASGI app swapped in for the request, the way uvicorn answers 503 past its
  `limit_concurrency`.

A connection must also send its request head within HEAD_TIMEOUT_SECONDS of opening (or of
its previous request): uvicorn times out idle keep-alive connections but not one that never
sends a request, so a few thousand silent connections held the server's file descriptors.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from skiplock.api.errors import HTTP_CODES

HEAD_TIMEOUT_SECONDS = 30.0  # nginx's client_header_timeout is 60 s


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that refuses a request whose head passes max_head_bytes."""

    max_head_bytes = 32 * 1024  # set per server by bounded_protocol()
    _in_head = True  # receiving a request line and headers (not a body)
    _received = 0  # bytes received since the head began (an upper bound of its size)
    _head_size = 0  # of the URL and headers parsed so far
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        self._stop_waiting()
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_SECONDS, self._head_late)

    def _stop_waiting(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            self._await_head()  # a response (a stream, say) is still going: not idle
            return
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        if self._in_head:
            self._received += len(data)
        super().data_received(data)
        if self._in_head and self._received > self.max_head_bytes:
            self._in_head = False
            self.transport.write(_raw_431(self.max_head_bytes))
            self.transport.close()

    def on_message_begin(self) -> None:
        self._head_size = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head, self._received = False, 0
        self._stop_waiting()
        if self._head_size <= self.max_head_bytes:
            super().on_headers_complete()
            return
        app, self.app = self.app, _answer_431(self.max_head_bytes)
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # a keep-alive connection's next request starts with its head
        self._await_head()


def _body_431(max_head_bytes: int) -> bytes:
    message = (
        f"the request's headers are larger than {max_head_bytes} bytes "
        "(SKIPLOCK_HTTP_MAX_HEADER_BYTES)"
    )
    return json.dumps({"error": {"code": HTTP_CODES[431], "message": message}}).encode()


def _raw_431(max_head_bytes: int) -> bytes:
    body = _body_431(max_head_bytes)
    head = (
        "HTTP/1.1 431 Request Header Fields Too Large\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


def _answer_431(max_head_bytes: int) -> ASGI3Application:
    body = _body_431(max_head_bytes)

    async def too_large(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 431, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return too_large


def bounded_protocol(max_head_bytes: int) -> type[BoundedHttpToolsProtocol]:
    """The protocol class for a server whose request heads are bounded at max_head_bytes."""
    return type(
        "BoundedHttpToolsProtocol",
        (BoundedHttpToolsProtocol,),
        {"max_head_bytes": max_head_bytes},
    )
