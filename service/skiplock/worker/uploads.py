"""Outputs whose asset row never commits: recorded before upload, removed after.

Before a worker stores an output it records the upload (skiplock.asset_uploads, a short
autocommit insert); the transaction that commits the asset row deletes the record
(finish_jobs.sql). So a record that outlives its job attempt names an orphan object: the
job was canceled or taken back while the output was stored, or the worker was killed
between upload and commit. The worker that knows (its completion was refused) removes the
object at once; otherwise any worker's housekeeping does (`sweep_once`), on every backend
it can reach, once the record's worker is gone or its upload is no longer in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Coroutine
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from skiplock import store
from skiplock.storage.protocol import StorageUnavailable
from skiplock.storage.registry import StorageNotConfigured, StorageRegistry

SWEEP_INTERVAL = 60.0
SWEEP_BATCH = 100
# A live worker refreshes workers.last_seen_at every third of its lease (10 s by default);
# one not seen for 5 minutes is gone, and its uploads with it.
WORKER_GONE_SECONDS = 300

log = logging.getLogger(__name__)


class Uploads:
    """One worker's uploads: recorded before they start, tracked while in flight."""

    def __init__(self, pool: AsyncConnectionPool, worker_id: str, storages: StorageRegistry):
        self._pool = pool
        self._worker_id = worker_id
        self._storages = storages
        self._in_flight: dict[uuid.UUID, tuple[str, str]] = {}  # job id -> (provider, key)

    async def begin(self, job_id: uuid.UUID, attempt: int, provider: str, object_key: str) -> None:
        """Record the upload before any byte goes out (a database error fails the attempt,
        which is retried: nothing is stored unrecorded)."""
        self._in_flight[job_id] = (provider, object_key)
        params = {
            "provider": provider,
            "object_key": object_key,
            "job_id": job_id,
            "attempt": attempt,
            "worker_id": self._worker_id,
        }
        async with self._pool.connection() as conn:
            await conn.execute(store.query("record_asset_upload"), params)

    def settle(
        self, job_id: uuid.UUID, *, committed: bool | None
    ) -> Coroutine[Any, Any, bool] | None:
        """The job's attempt is over here. When its asset row surely did not commit (a
        completion refused by the fence, a failed put, a runner that crashed), the removal of
        what its upload stored, for the caller to run; None when there is nothing to do.
        committed=True: the commit deleted the record; None (not known): the sweep decides
        later, from the database. Synchronous until then: a job without an output (most)
        costs a dict lookup, no task."""
        upload = self._in_flight.pop(job_id, None)
        if upload is not None and committed is False:
            return self.discard(*upload)
        return None

    async def discard(self, provider: str, object_key: str) -> bool:
        """Remove an object whose asset row will never commit, then its record. False (the
        record stays, for a later sweep) when the store or the database did not answer."""
        try:
            await self._storages.delete(provider, object_key)
            async with self._pool.connection() as conn:
                await conn.execute(
                    store.query("forget_asset_upload"),
                    {"provider": provider, "object_key": object_key},
                )
        except (StorageUnavailable, StorageNotConfigured, OSError, psycopg.Error) as exc:
            log.warning("orphan %s:%s kept for a later sweep (%s)", provider, object_key, exc)
            return False
        return True

    async def sweep_once(self) -> int:
        """Remove up to SWEEP_BATCH orphans this worker can reach; how many were removed."""
        params = {
            "providers": self._storages.providers,
            "worker_id": self._worker_id,
            "in_flight": [key for _, key in self._in_flight.values()],
            "worker_gone_seconds": WORKER_GONE_SECONDS,
            "limit": SWEEP_BATCH,
        }
        async with self._pool.connection() as conn:
            cursor = await conn.execute(store.query("find_orphan_uploads"), params)
            orphans = await cursor.fetchall()
        removed = 0
        for provider, object_key, *_ in orphans:
            removed += await self.discard(provider, object_key)
        if removed:
            log.info("removed %d orphan object(s) whose asset row never committed", removed)
        return removed

    async def sweep_forever(self) -> None:
        while True:
            with contextlib.suppress(psycopg.Error):
                await self.sweep_once()
            await asyncio.sleep(SWEEP_INTERVAL)
