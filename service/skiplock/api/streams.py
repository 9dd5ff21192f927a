"""The SSE routes: a company's events, and one job's (SPEC §4).

A stream subscribes to the process's notifier *before* it reads anything from the table,
then replays (after a Last-Event-ID) and goes live, dropping any live event at or before
the last position it sent: no gap, no duplicate across the hand-over. Written by hand on
Starlette's StreamingResponse (about 100 lines) rather than with sse-starlette: the
stream needs its own shutdown signal, overflow handling and de-duplication anyway, and
what is left is formatting four kinds of frames.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse

from skiplock import events, store
from skiplock.api.auth import authorize
from skiplock.api.errors import ApiError
from skiplock.api.jobs import job_json
from skiplock.api.notifier import Notifier, Subscription
from skiplock.events import Event, Position
from skiplock.limits import ServeLimits

HEARTBEAT_SECONDS = 15.0
TERMINAL_STATUSES = ("done", "failed", "canceled")
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
STREAM_RETRY_AFTER = "5"  # seconds: streams close as clients leave


def frame(data: dict[str, Any], event: str, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {events.encode_data(data)}\n\n".encode()


def event_frame(event: Event) -> bytes:
    return frame(event.data(), event.type, event.id)


def _last_event_id(request: Request) -> str | None:
    return request.headers.get("last-event-id") or request.query_params.get("lastEventId")


async def company_events(request: Request) -> StreamingResponse:
    auth = await authorize(request, token_allowed=True)
    stream = _Stream(request, auth.company_id, None)
    stream.admit()
    return StreamingResponse(
        stream.company(_last_event_id(request)), media_type="text/event-stream", headers=HEADERS
    )


async def job_events(request: Request) -> StreamingResponse:
    auth = await authorize(request, "jobId", token_allowed=True)
    job_id = auth.ids["jobId"]
    stream = _Stream(request, auth.company_id, job_id)
    row = await stream.snapshot()  # 404 before the stream starts
    stream.admit()
    return StreamingResponse(
        stream.job(row, _last_event_id(request)), media_type="text/event-stream", headers=HEADERS
    )


class _Stream:
    def __init__(self, request: Request, company_id: uuid.UUID, job_id: uuid.UUID | None) -> None:
        self.request = request
        self.company_id = company_id
        self.job_id = job_id
        self.notifier: Notifier = request.app.state.notifier
        self.closing: asyncio.Event = request.app.state.closing
        self.pool = request.app.state.pool
        # Subscribed first, so nothing committed from here on can be missed.
        self.subscription: Subscription | None = self.notifier.subscribe(company_id, job_id)
        self.sent = events.START
        # Waiters for "stop" (shutdown or overflow), made once per stream, not per event.
        self._stop_waiters: set[asyncio.Future[Any]] = set()

    def admit(self) -> None:
        """Keep this stream only within the process's and the company's stream limits
        (limits.py): 503 past the process's, 429 past the company's, with Retry-After."""
        limits: ServeLimits = self.request.app.state.limits
        if self.notifier.subscriber_count > limits.max_streams:
            self.close()
            raise ApiError(
                503,
                f"this server has {limits.max_streams} event streams open, its limit "
                "(SKIPLOCK_SSE_MAX_STREAMS); try again shortly",
                code="too_many_streams",
                headers={"Retry-After": STREAM_RETRY_AFTER},
            )
        if self.notifier.company_subscriber_count(self.company_id) > limits.max_streams_per_company:
            self.close()
            raise ApiError(
                429,
                f"this company has {limits.max_streams_per_company} event streams open on "
                "this server, its limit (SKIPLOCK_SSE_MAX_STREAMS_PER_COMPANY); close one, "
                "or follow the company's stream instead of one stream per job",
                code="too_many_streams",
                headers={"Retry-After": STREAM_RETRY_AFTER},
            )

    def close(self) -> None:
        if self.subscription is not None:
            self.notifier.unsubscribe(self.subscription)
            self.subscription = None
        for waiter in self._stop_waiters:
            waiter.cancel()
        self._stop_waiters.clear()

    async def snapshot(self) -> dict[str, Any]:
        if self.job_id is None:
            raise RuntimeError("snapshot() is for job streams")
        try:
            async with self.pool.connection() as conn:
                row = await store.find_job_with_tip(conn, self.company_id, self.job_id)
        except BaseException:
            self.close()
            raise
        if row is None:
            self.close()
            raise ApiError(404, "no such job")
        return row

    async def company(self, last_event_id: str | None) -> AsyncIterator[bytes]:
        try:
            if last_event_id is not None:
                position = await self._position(last_event_id)
                if position is None:
                    yield _reset(last_event_id)  # then as if new: live events only
                else:
                    async for chunk in self._replay(position):
                        yield chunk
            async for chunk in self._live():
                yield chunk
        finally:
            self.close()

    async def job(self, row: dict[str, Any], last_event_id: str | None) -> AsyncIterator[bytes]:
        """`reset` first when Last-Event-ID names no retained event of this job (SPEC §4),
        then `status`, then the events after Last-Event-ID or, without one, after `status`."""
        try:
            position = None
            if last_event_id is not None:
                position = await self._position(last_event_id)
                if position is None:
                    yield _reset(last_event_id)
            yield frame(job_json(row), "status")
            if row["tip_id"] is not None:
                self.sent = Position(int(row["tip_xid"]), row["tip_id"])
            if position is not None:
                async for chunk in self._replay(position):
                    yield chunk
                    if chunk is _TERMINAL:
                        return
            if row["status"] in TERMINAL_STATUSES:
                return
            async for chunk in self._live():
                yield chunk
                if chunk is _TERMINAL:
                    return
        finally:
            self.close()

    async def _position(self, last_event_id: str) -> Position | None:
        """Where last_event_id lies in this stream, or None when it names no retained event
        of it (pruned, another company's or job's, or not an id at all)."""
        if not (last_event_id.isascii() and last_event_id.isdigit() and len(last_event_id) < 19):
            return None
        async with self.pool.connection() as conn:
            return await events.resolve_position(
                conn, int(last_event_id), self.company_id, self.job_id
            )

    async def _replay(self, position: Position) -> AsyncIterator[bytes]:
        """The stream's events after position, from the table, in (xid, id) order."""
        after = self.sent = position
        while True:
            async with self.pool.connection() as conn:
                if self.job_id is not None:
                    batch = await events.read_job_events(conn, self.job_id, after)
                else:
                    batch = await events.read_company_events(conn, self.company_id, after)
            for event in batch.events:
                self.sent = event.position
                yield event_frame(event)
                if self.job_id is not None and event.is_terminal:
                    yield _TERMINAL
                    return
            after = batch.position
            if not batch.full:
                return

    async def _live(self) -> AsyncIterator[bytes]:
        subscription = self.subscription
        if subscription is None:
            return
        while not self.closing.is_set():
            event = await self._next(subscription)
            if event is None:
                if subscription.overflowed.is_set() or self.closing.is_set():
                    return  # the client resumes with Last-Event-ID
                yield b": keep-alive\n\n"
                continue
            if event.position <= self.sent:
                continue  # already sent by the replay
            self.sent = event.position
            yield event_frame(event)
            if self.job_id is not None and event.is_terminal:
                yield _TERMINAL
                return

    async def _next(self, subscription: Subscription) -> Event | None:
        """The next event, or None after HEARTBEAT_SECONDS, on overflow or on shutdown."""
        if not subscription.queue.empty():
            return subscription.queue.get_nowait()
        if not self._stop_waiters:
            self._stop_waiters = {
                asyncio.ensure_future(self.closing.wait()),
                asyncio.ensure_future(subscription.overflowed.wait()),
            }
        getting = asyncio.ensure_future(subscription.queue.get())
        try:
            await asyncio.wait(
                {getting, *self._stop_waiters},
                timeout=HEARTBEAT_SECONDS,
                return_when="FIRST_COMPLETED",
            )
        finally:
            if not getting.done():
                getting.cancel()
        if getting.done() and not getting.cancelled():
            return getting.result()
        return None


def _reset(last_event_id: str) -> bytes:
    """No id (a reset is not an event of the log); data, since browsers drop data-less events."""
    return frame({"lastEventId": last_event_id[:1000]}, "reset")


# A marker yielded after a job's terminal event: nothing is written for it.
_TERMINAL = b""
