"""One dedicated LISTEN connection that survives restarts and half-open TCP.

A worker listens on `content_jobs_queued` (its doorbell); the API will listen on
`content_job_events`. Notifications are only doorbells: whoever hears one reads the table,
so one lost while the connection was down costs nothing as long as the owner catches up on
every (re)connect (`on_connect`).

A connection that stops answering (a half-open TCP connection after a network fault, a
server that froze) is noticed within HEALTH_INTERVAL + HEALTH_TIMEOUT seconds: when no
notification has arrived for HEALTH_INTERVAL, the listener sends a ping and gives it
HEALTH_TIMEOUT to come back. TCP keepalives back this up at the socket level.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from skiplock import db, store
from skiplock.errors import DatabaseUnavailable

HEALTH_INTERVAL = 10.0
HEALTH_TIMEOUT = 10.0
RECONNECT_DELAYS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)

log = logging.getLogger(__name__)

OnNotify = Callable[[str, str], None]  # (channel, payload)
OnConnect = Callable[[], Awaitable[None]]


class Listener:
    def __init__(
        self,
        database_url: str,
        channels: Sequence[str],
        on_notify: OnNotify,
        on_connect: OnConnect | None = None,
        *,
        name: str = "listener",
        health_interval: float = HEALTH_INTERVAL,
        health_timeout: float = HEALTH_TIMEOUT,
    ) -> None:
        self._url = database_url
        self._channels = list(channels)
        self._on_notify = on_notify
        self._on_connect = on_connect
        self._name = name
        self._health_interval = health_interval
        self._health_timeout = health_timeout
        self.connected = asyncio.Event()
        self.reconnects = 0

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with backoff whenever the connection fails."""
        failures = 0
        while True:
            try:
                conn = await db.connect_async(self._url)
            except DatabaseUnavailable as exc:
                failures = await self._pause(failures, str(exc))
                continue
            try:
                async with conn:
                    await self._listen(conn)
                    if failures:
                        log.info("%s: reconnected to Postgres", self._name)
                    failures = 0
                    self.reconnects += 1
                    await self._serve(conn)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                self.connected.clear()
                failures = await self._pause(failures, f"{type(exc).__name__}: {exc}")

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        for channel in self._channels:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        self.connected.set()
        if self._on_connect is not None:
            # After LISTEN, so anything committed from here on rings; the owner reads the
            # table once to catch up with what rang while no one listened.
            await self._on_connect()

    async def _serve(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            heard = False
            async for notify in conn.notifies(timeout=self._health_interval):
                heard = True
                self._on_notify(notify.channel, notify.payload)
            if not heard:
                await self._ping(conn)

    async def _ping(self, conn: psycopg.AsyncConnection[Any]) -> None:
        ping = asyncio.ensure_future(conn.execute(store.query("ping")))
        done, _ = await asyncio.wait({ping}, timeout=self._health_timeout)
        if ping in done:
            ping.result()
            return
        # Not cancelled: psycopg would send a cancel request and wait for an answer that a
        # half-open connection never gives. Shutting the socket down ends the ping at once.
        _sever(conn)
        with contextlib.suppress(psycopg.Error, OSError):
            await ping
        raise TimeoutError(f"no answer to a ping in {self._health_timeout:g} s")

    async def _pause(self, failures: int, why: str) -> int:
        delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
        if failures == 0:
            log.warning("%s: lost its Postgres connection (%s); reconnecting", self._name, why)
        await asyncio.sleep(delay)
        return failures + 1


def _sever(conn: psycopg.AsyncConnection[Any]) -> None:
    """Shut the connection's socket down, so whatever waits on it fails now."""
    with contextlib.suppress(OSError, psycopg.Error):
        sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()
