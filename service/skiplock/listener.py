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
import logging
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
    ) -> None:
        self._url = database_url
        self._channels = list(channels)
        self._on_notify = on_notify
        self._on_connect = on_connect
        self._name = name
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
            async for notify in conn.notifies(timeout=HEALTH_INTERVAL):
                heard = True
                self._on_notify(notify.channel, notify.payload)
            if not heard:
                await self._ping(conn)

    async def _ping(self, conn: psycopg.AsyncConnection[Any]) -> None:
        try:
            await asyncio.wait_for(conn.execute(store.query("ping")), HEALTH_TIMEOUT)
        except TimeoutError:
            raise TimeoutError(f"no answer to a ping in {HEALTH_TIMEOUT:.0f} s") from None

    async def _pause(self, failures: int, why: str) -> int:
        delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
        if failures == 0:
            log.warning("%s: lost its Postgres connection (%s); reconnecting", self._name, why)
        await asyncio.sleep(delay)
        return failures + 1
