"""A webhook receiver for tests: a real HTTP server on 127.0.0.1 (uvicorn, in the test's
event loop) that records every request and answers as the test says: 200 by default, or a
status per request, or not at all until released (a receiver that hangs)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from processes import free_port
from skiplock.api.server import QuietServer
from skiplock.api.server import config as server_config

HANG = -1  # an answer that never comes (until release())


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived
    path: str


@dataclass
class Receiver:
    port: int
    requests: list[Received] = field(default_factory=list)
    # The status for the n-th request (0-based); HANG to hold it until release().
    answer: Callable[[int], int] = lambda n: 200
    released: asyncio.Event = field(default_factory=asyncio.Event)
    open_now: int = 0
    most_open: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def release(self) -> None:
        self.released.set()

    def by_id(self, webhook_id: str) -> list[Received]:
        return [r for r in self.requests if r.headers.get("webhook-id") == webhook_id]

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        index = len(self.requests)
        self.requests.append(
            Received(dict(request.headers), body, time.monotonic(), request.url.path)
        )
        status = self.answer(index)
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            if status == HANG:
                await self.released.wait()
                status = 200
            return PlainTextResponse("ok" if status < 400 else "receiver says no", status)
        finally:
            self.open_now -= 1


@contextlib.asynccontextmanager
async def running_receiver(answer: Callable[[int], int] | None = None) -> AsyncIterator[Receiver]:
    receiver = Receiver(free_port())
    if answer is not None:
        receiver.answer = answer
    app = Starlette(routes=[Route("/hook", receiver.handle, methods=["POST"])])
    server = QuietServer(server_config(app, "127.0.0.1", receiver.port))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    try:
        yield receiver
    finally:
        receiver.release()
        server.should_exit = True
        await asyncio.wait_for(serving, 15)
