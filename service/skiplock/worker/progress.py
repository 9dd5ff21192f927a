"""Progress writes: at most one a second per job, the latest value wins, batched across jobs.

Handlers call ctx.progress() as often as they like (from the event loop or, for `def`
handlers, from their thread). The value is kept here; a flush writes every job whose last
write is at least a second old, all in one statement (one notifying commit). Whatever is
still pending when the job finishes is taken by the completion and written in its
transaction, so the last progress a client sees is the handler's last call.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from skiplock import store
from skiplock.worker import sanitize

MIN_INTERVAL = 1.0  # seconds between two writes of one job's progress
FLUSH_TICK = 0.2

log = logging.getLogger(__name__)


class ProgressWriter:
    def __init__(self, pool: AsyncConnectionPool, worker_id: str) -> None:
        self._pool = pool
        self._worker_id = worker_id
        self._lock = threading.Lock()  # def handlers report from their own thread
        self._pending: dict[uuid.UUID, tuple[int, dict[str, Any]]] = {}
        # Being written now: the completion writes these again (a no-op if the write landed
        # first) so a completion that commits first cannot lose the last value.
        self._inflight: dict[uuid.UUID, tuple[int, dict[str, Any]]] = {}
        self._last_write: dict[uuid.UUID, float] = {}
        self._written: dict[uuid.UUID, dict[str, Any]] = {}  # the value in the database
        self._writing: asyncio.Future[None] | None = None  # resolved when a write ends

    def report(self, job_id: uuid.UUID, attempt: int, value: dict[str, Any]) -> None:
        value = sanitize.clean_progress(value)  # NUL or a lone surrogate would poison a batch
        with self._lock:
            self._pending[job_id] = (attempt, value)

    async def settle(self, job_ids: list[uuid.UUID]) -> None:
        """Wait until no write of these jobs' progress is in flight. The completion writes
        the progress event of its job itself, only for a value not already in the database
        (the statement cannot compare with the row it replaces), so it must know."""
        writing = self._writing
        if writing is not None and any(job_id in self._inflight for job_id in job_ids):
            await asyncio.shield(writing)

    def take(self, job_id: uuid.UUID) -> dict[str, Any] | None:
        """The value not yet written, removed (the completion writes it); None when there is
        none, or it is the value already in the database."""
        with self._lock:
            pending = self._pending.pop(job_id, None) or self._inflight.pop(job_id, None)
            self._inflight.pop(job_id, None)
            self._last_write.pop(job_id, None)
            written = self._written.pop(job_id, None)
        if pending is None or pending[1] == written:
            return None
        return pending[1]

    async def run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_TICK)
            due = self._due_now()
            if due:
                await self._write(due)

    def _due_now(self) -> dict[uuid.UUID, tuple[int, dict[str, Any]]]:
        now = time.monotonic()
        with self._lock:
            due = {
                job_id: pending
                for job_id, pending in self._pending.items()
                if now - self._last_write.get(job_id, 0.0) >= MIN_INTERVAL
            }
            for job_id in due:
                del self._pending[job_id]
                self._last_write[job_id] = now
            self._inflight.update(due)
        return due

    async def _write(self, due: dict[uuid.UUID, tuple[int, dict[str, Any]]]) -> None:
        params = {
            "worker_id": self._worker_id,
            "job_ids": list(due),
            "attempts": [attempt for attempt, _ in due.values()],
            "progress": [Jsonb(value) for _, value in due.values()],
        }
        self._writing = writing = asyncio.get_running_loop().create_future()
        try:
            async with self._pool.connection() as conn:
                await conn.execute(store.query("write_progress"), params, prepare=True)
        except Exception as exc:
            self._done_writing(due)
            if not sanitize.is_transient(exc):
                # Refused for its data: written again it would fail again, every tick. Progress
                # is advisory; the next value reported replaces these.
                log.warning("progress write refused (%s); dropping %d value(s)", exc, len(due))
                return
            # Put the values back unless newer ones came meanwhile.
            log.warning("progress write failed (%s); will retry", type(exc).__name__)
            with self._lock:
                for job_id, pending in due.items():
                    if job_id in self._last_write:  # still running
                        self._pending.setdefault(job_id, pending)
        else:
            with self._lock:
                for job_id, (_, value) in due.items():
                    if job_id in self._last_write:  # still running
                        self._written[job_id] = value
            self._done_writing(due)
        finally:
            self._writing = None
            writing.set_result(None)

    def _done_writing(self, due: dict[uuid.UUID, tuple[int, dict[str, Any]]]) -> None:
        with self._lock:
            for job_id, pending in due.items():
                if self._inflight.get(job_id) is pending:
                    del self._inflight[job_id]
