"""One notifier per API process: a single LISTEN connection, one read per doorbell, fanned
out in memory to every SSE subscriber.

On each doorbell on `content_job_events` (or every 50 ms while committed events wait above
the horizon, and every second regardless) the notifier reads the events after its position
once, with the ordered reader, and puts each into the bounded queue of every subscriber of
that company. Database connections and queries do not grow with the number of clients.

A subscriber whose queue is full is dropped (`overflowed`): its stream ends, the client
resumes with Last-Event-ID, and nobody else waits for it. After the LISTEN connection
comes back (a Postgres restart), the notifier simply reads on from its position: what
was committed meanwhile is in the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import psycopg
from psycopg_pool import AsyncConnectionPool

from skiplock import events, store
from skiplock.events import Event, Position
from skiplock.listener import Listener

# Room for two full reads: a client that keeps up never sees its queue fill, even when
# the notifier reads full batches back to back.
QUEUE_SIZE = 2 * events.READ_BATCH
RETRY_SECONDS = 0.5

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Subscription:
    company_id: uuid.UUID
    job_id: uuid.UUID | None = None
    queue: asyncio.Queue[Event] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    overflowed: asyncio.Event = field(default_factory=asyncio.Event)


class Notifier:
    def __init__(self, database_url: str, pool: AsyncConnectionPool) -> None:
        self._pool = pool
        self._listener = Listener(
            database_url,
            [events.EVENTS_CHANNEL],
            self._on_notify,
            self._on_connect,
            name="notifier",
        )
        self._by_company: dict[uuid.UUID, set[Subscription]] = defaultdict(set)
        self._doorbell = asyncio.Event()
        self.position: Position | None = None
        self.delivered = 0
        self.last_lag_seconds = 0.0  # commit (created_at) -> fan-out, of the last event

    # -- subscriptions ---------------------------------------------------------------------

    def subscribe(self, company_id: uuid.UUID, job_id: uuid.UUID | None = None) -> Subscription:
        subscription = Subscription(company_id, job_id)
        self._by_company[company_id].add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._by_company.get(subscription.company_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._by_company[subscription.company_id]

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._by_company.values())

    def company_subscriber_count(self, company_id: uuid.UUID) -> int:
        subscribers = self._by_company.get(company_id)
        return len(subscribers) if subscribers else 0

    # -- reading ---------------------------------------------------------------------------

    def _on_notify(self, channel: str, payload: str) -> None:
        self._doorbell.set()

    async def _on_connect(self) -> None:
        self._doorbell.set()  # catch up on whatever committed while no one listened

    async def run(self) -> None:
        listening = asyncio.create_task(self._listener.run())
        try:
            await self._read_forever()
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening

    async def _read_forever(self) -> None:
        while True:
            try:
                if self.position is None:
                    self.position = await self._tip()
                wait = await self._read_once()
            except psycopg.Error as exc:
                log.warning("notifier: reading events failed (%s); retrying", type(exc).__name__)
                wait = RETRY_SECONDS
            if wait:
                self._doorbell.clear()
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that arrives as the doorbell rings, and serve's shutdown would hang.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._doorbell.wait()

    async def _tip(self) -> Position:
        async with self._pool.connection() as conn:
            row = await store.event_log_tip(conn)
        return Position(int(row["xid"]), row["id"]) if row else events.START

    async def _read_once(self) -> float:
        """Read and fan out one batch; how long to wait before the next read (0: at once)."""
        async with self._pool.connection() as conn:
            batch = await events.read_all_events(conn, self.position or events.START)
        for event in batch.events:
            self._fan_out(event)
        self.position = batch.position
        if batch.full:
            return 0.0
        return events.PENDING_REREAD_SECONDS if batch.pending else events.IDLE_REREAD_SECONDS

    def _fan_out(self, event: Event) -> None:
        self.delivered += 1
        self.last_lag_seconds = max(0.0, time.time() - event.created_at.timestamp())
        for subscription in list(self._by_company.get(event.company_id, ())):
            if subscription.job_id is not None and subscription.job_id != event.job_id:
                continue
            try:
                subscription.queue.put_nowait(event)
            except asyncio.QueueFull:
                # Too slow to keep up: drop it (it resumes with Last-Event-ID) rather than
                # buffer without bound or hold everyone else back.
                subscription.overflowed.set()
                self.unsubscribe(subscription)
