"""Reading the event log in its one total order, never past the visibility horizon.

Event ids come from a sequence, and transactions commit out of id order, so "id > last"
loses events (a reader can pass id 7 before the transaction holding id 6 commits). Events
are read by their order key (xid, id) instead, and only below the horizon
pg_snapshot_xmin(pg_current_snapshot()): every transaction that could still write an event
below it has ended. So a reader that resumes after the last event it read never skips one,
and never sees one appear behind it. The price: any write transaction left open anywhere in
the cluster holds delivery back until it ends (see README, "Event order").
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection, sql

from skiplock import db, store

EVENTS_CHANNEL = "content_job_events"
QUEUED_CHANNEL = "content_jobs_queued"
TERMINAL_TYPES = frozenset({"content_job.done", "content_job.failed", "content_job.canceled"})

# While committed events wait above the horizon no doorbell will ring when the blocking
# transaction ends (it wrote nothing of ours), so readers look again this often (SPEC §2).
PENDING_REREAD_SECONDS = 0.05
# With nothing pending, a reader also looks this often in case a notification was lost
# (a LISTEN connection that dropped and came back, say).
IDLE_REREAD_SECONDS = 1.0
READ_BATCH = 1000


@dataclass(frozen=True, order=True)
class Position:
    """A place in the event order: after (xid, id)."""

    xid: int = 0
    id: int = 0


START = Position()


def utc_text(value: datetime) -> str:
    """RFC 3339 in UTC, the form every timestamp takes in skiplock's JSON."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def encode_data(data: dict[str, Any]) -> str:
    """The JSON text of an SSE `data:` line. A webhook delivery's body is the same text
    (SPEC §7), made by this same function from the same Event.data()."""
    return json.dumps(data, separators=(",", ":"))


@dataclass(frozen=True)
class Event:
    id: int
    xid: int
    company_id: uuid.UUID
    job_id: uuid.UUID
    type: str
    payload: dict[str, Any]
    created_at: datetime

    @property
    def position(self) -> Position:
        return Position(self.xid, self.id)

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL_TYPES

    def data(self) -> dict[str, Any]:
        """The SSE `data:` object: the event's identity plus its payload's fields."""
        return {
            "eventId": self.id,
            "jobId": str(self.job_id),
            "companyId": str(self.company_id),
            "type": self.type,
            "createdAt": utc_text(self.created_at),
            **self.payload,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Event:
        payload = row["payload"]
        if isinstance(payload, str):
            payload = json.loads(payload)
        return cls(
            id=row["id"],
            xid=int(row["xid"]),
            company_id=row["company_id"],
            job_id=row["job_id"],
            type=row["type"],
            payload=payload,
            created_at=row["created_at"],
        )


@dataclass
class Batch:
    """What one read returned, where to resume, and whether to look again soon."""

    events: list[Event]
    position: Position
    pending: bool
    full: bool = field(default=False)  # the read hit its limit: more are due now


def _batch(rows: list[dict[str, Any]], after: Position, limit: int) -> Batch:
    events = [Event.from_row(r) for r in rows if r["id"] is not None]
    position = events[-1].position if events else after
    pending = bool(rows and rows[0]["pending"])
    return Batch(events=events, position=position, pending=pending, full=len(events) >= limit)


async def read_company_events(
    conn: AsyncConnection[Any], company_id: uuid.UUID, after: Position, limit: int = READ_BATCH
) -> Batch:
    return await _read_scoped(conn, "company_id", company_id, after, limit)


async def read_job_events(
    conn: AsyncConnection[Any], job_id: uuid.UUID, after: Position, limit: int = READ_BATCH
) -> Batch:
    return await _read_scoped(conn, "job_id", job_id, after, limit)


async def _read_scoped(
    conn: AsyncConnection[Any], scope: str, scope_id: uuid.UUID, after: Position, limit: int
) -> Batch:
    rows = await store.read_events_after(
        conn, scope=scope, scope_id=scope_id, after_xid=after.xid, after_id=after.id, limit=limit
    )
    return _batch(rows, after, limit)


async def read_all_events(
    conn: AsyncConnection[Any], after: Position, limit: int = READ_BATCH
) -> Batch:
    rows = await store.read_all_events_after(
        conn, after_xid=after.xid, after_id=after.id, limit=limit
    )
    return _batch(rows, after, limit)


async def resolve_position(
    conn: AsyncConnection[Any],
    event_id: int,
    company_id: uuid.UUID,
    job_id: uuid.UUID | None = None,
) -> Position | None:
    """Where to resume after a Last-Event-ID; None when that event is unknown or pruned."""
    row = await store.find_event_position(conn, event_id, company_id, job_id)
    return Position(int(row["xid"]), row["id"]) if row else None


def listen_statement(channel: str) -> sql.Composed:
    return sql.SQL("LISTEN {}").format(sql.Identifier(channel))


async def follow_company_events(
    database_url: str, company_id: uuid.UUID, after: Position = START
) -> AsyncIterator[Event]:
    """Every event of a company after `after`, forever, on one dedicated connection.

    A doorbell on content_job_events for this company triggers a read; while events wait
    above the horizon it re-reads every 50 ms; otherwise it re-reads every second anyway.
    (The API's notifier serves many clients from one connection; this is the one-reader
    form, for scripts and tests.)
    """
    conn = await db.connect_async(database_url)
    try:
        await conn.execute(listen_statement(EVENTS_CHANNEL))
        position = after
        while True:
            batch = await read_company_events(conn, company_id, position)
            for event in batch.events:
                yield event
            position = batch.position
            if batch.full:
                continue
            wait = PENDING_REREAD_SECONDS if batch.pending else IDLE_REREAD_SECONDS
            await _wait_for_doorbell(conn, str(company_id), wait)
    finally:
        await conn.close()


async def _wait_for_doorbell(conn: AsyncConnection[Any], company_id: str, timeout: float) -> None:
    """Return when this company's doorbell rings or after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (remaining := deadline - loop.time()) > 0:
        async for notify in conn.notifies(timeout=remaining, stop_after=1):
            if json.loads(notify.payload).get("companyId") == company_id:
                return
