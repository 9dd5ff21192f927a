"""Housekeeping any worker does: rescue expired leases, prune old events and dead workers.

Every worker runs these; SKIP LOCKED (rescue) and small batches (prune) let them run
side by side without waiting on each other or holding the event horizon back.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg
from psycopg_pool import AsyncConnectionPool

from skiplock import store

PRUNE_INTERVAL = 60.0
PRUNE_BATCH = 1000
RESCUE_BATCH = 1000

log = logging.getLogger(__name__)


def rescue_interval(lease_seconds: float) -> float:
    """Often enough that a dead worker's job waits at most about a lease and a quarter."""
    return max(0.5, min(5.0, lease_seconds / 4))


async def rescue_forever(pool: AsyncConnectionPool, lease_seconds: float) -> None:
    while True:
        await asyncio.sleep(rescue_interval(lease_seconds))
        try:
            await rescue_once(pool)
        except psycopg.Error as exc:
            log.debug("rescue skipped: %s", type(exc).__name__)


async def rescue_once(pool: AsyncConnectionPool) -> int:
    total = 0
    while True:
        async with pool.connection() as conn:
            rows = await store.rescue_expired_leases(conn, limit=RESCUE_BATCH)
        for row in rows:
            log.warning(
                "job %s: lease expired; now %s (attempt %s)",
                row["id"],
                row["status"],
                row["attempts"],
                extra={"job_id": str(row["id"]), "status": row["status"]},
            )
        total += len(rows)
        if len(rows) < RESCUE_BATCH:
            return total


async def prune_forever(pool: AsyncConnectionPool, retention_days: int) -> None:
    while True:
        try:
            await prune_once(pool, retention_days)
        except psycopg.Error as exc:
            log.debug("pruning skipped: %s", type(exc).__name__)
        await asyncio.sleep(PRUNE_INTERVAL)


# What pruning deletes, PRUNE_BATCH rows per statement: events of finished jobs past the
# retention, delivered and failed webhook deliveries past it, and deliveries whose webhook is
# gone (deleted by hand, or racing its delete).
PRUNED = ("prune_events", "prune_webhook_deliveries", "prune_orphan_webhook_deliveries")


async def prune_once(pool: AsyncConnectionPool, retention_days: int) -> int:
    """Delete what PRUNED names, PRUNE_BATCH per transaction; and dead workers."""
    total = 0
    params = {"retention_days": retention_days, "limit": PRUNE_BATCH}
    async with pool.connection() as conn:
        for name in PRUNED:
            while True:
                cursor = await conn.execute(store.query(name), params, prepare=True)
                total += cursor.rowcount
                if cursor.rowcount < PRUNE_BATCH:
                    break
        await conn.execute(store.query("prune_workers"))
    if total:
        log.info(
            "pruned %d event(s) and webhook deliveries older than %d day(s)", total, retention_days
        )
    return total
