"""Job retention: finished jobs past SKIPLOCK_JOB_RETENTION_DAYS go, with what they own.

Any worker runs it, at start and every minute, as event pruning does (maintenance.py).
Each batch (sql/queries/purge_finished_jobs.sql) deletes up to BATCH finished jobs with
their events and asset rows in one short transaction (webhook deliveries follow by
ON DELETE CASCADE), locking only those rows (SKIP LOCKED), so workers purging side by
side share the work and claims never wait on it. The stored bytes are deleted after the
batch commits, each through the backend its asset row names: a crash in between leaves an
orphaned object in storage, never an asset row that names no bytes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg_pool import AsyncConnectionPool

from skiplock import store
from skiplock.storage import Storage

PURGE_INTERVAL = 60.0
BATCH = 1000
DELETE_CONCURRENCY = 16

# The backend that holds an asset's bytes, by the provider its row names ('local', 's3',
# 'postgres'); None when this process cannot reach it.
StorageLookup = Callable[[str], Storage | None]

log = logging.getLogger(__name__)


@dataclass
class Purged:
    jobs: int = 0
    events: int = 0
    objects: int = 0  # stored objects deleted
    objects_left: int = 0  # objects no backend here could delete (left as orphans)


def storage_lookup(*backends: Storage) -> StorageLookup:
    """A lookup over the given backends, keyed by their provider."""
    by_provider = {backend.provider: backend for backend in backends}
    return by_provider.get


async def run_forever(
    pool: AsyncConnectionPool, retention_seconds: int, storages: StorageLookup
) -> None:
    while True:
        try:
            await run_once(pool, retention_seconds, storages)
        except psycopg.Error as exc:
            log.debug("job retention skipped: %s", type(exc).__name__)
        await asyncio.sleep(PURGE_INTERVAL)


async def run_once(
    pool: AsyncConnectionPool, retention_seconds: int, storages: StorageLookup
) -> Purged:
    """Delete every finished job older than the retention, BATCH per transaction."""
    purged = Purged()
    while True:
        async with pool.connection() as conn:
            row = await store.purge_finished_jobs(
                conn, retention_seconds=retention_seconds, limit=BATCH
            )
        purged.jobs += row["jobs"]
        purged.events += row["events"]
        await _delete_objects(row["objects"], storages, purged)
        if row["jobs"] < BATCH:
            break
    if purged.jobs:
        log.info(
            "deleted %d finished job(s) older than %d s, with %d event(s) and %d stored object(s)",
            purged.jobs,
            retention_seconds,
            purged.events,
            purged.objects,
        )
    return purged


async def _delete_objects(
    objects: list[list[str]], storages: StorageLookup, purged: Purged
) -> None:
    """Delete the bytes of rows already deleted, DELETE_CONCURRENCY at a time (an object
    store answers each in milliseconds); a failure leaves an orphan, logged."""
    for start in range(0, len(objects), DELETE_CONCURRENCY):
        chunk = objects[start : start + DELETE_CONCURRENCY]
        done = await asyncio.gather(*(_delete_object(p, k, storages) for p, k in chunk))
        purged.objects += sum(done)
        purged.objects_left += len(done) - sum(done)


async def _delete_object(provider: str, object_key: str, storages: StorageLookup) -> bool:
    backend = storages(provider)
    if backend is None:
        log.warning(
            "cannot delete %s object %s of a deleted job: this worker has no %s storage",
            provider,
            object_key,
            provider,
        )
        return False
    try:
        await backend.delete(object_key)
    except Exception as exc:  # any backend's failure: the object is left, the purge goes on
        log.warning("cannot delete %s object %s: %s", provider, object_key, exc)
        return False
    return True
