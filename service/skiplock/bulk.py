"""Bulk cancel and retry of the jobs that match a filter (SPEC §8), for the API and the CLI.

A bulk change runs as batches of at most BATCH jobs, each one statement and one short
transaction (sql/queries/cancel_jobs_matching.sql, retry_jobs_matching.sql), repeated until
a batch matches fewer than BATCH jobs. So cancelling 100,000 jobs never becomes one huge
transaction that would hold the event horizon back (SPEC §2) or lock 100,000 rows at once;
each batch fires the same events as the single-job statements and rings the company's
doorbell once. Interrupted half way (the client went away, the database restarted), the
batches already committed stay done: running it again finishes the rest.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection

from skiplock import store

# Measured on 2 shared cores, fsync on: a batch of 1,000 (its events and triggers included)
# takes 30-40 ms, so 100,000 jobs are canceled or retried in 3-4 s, and no
# transaction lasts long (bench/soak/batches.py).
BATCH = 1000
CANCELABLE = ("queued", "running")
RETRYABLE = ("failed", "canceled")
# A batch waits on row locks held by workers' own short statements; in the rare case that
# two such statements lock shared rows in opposite orders, Postgres aborts one of them
# (deadlock_timeout, 1 s) and the batch is simply run again.
DEADLOCK_RETRIES = 5

Connect = Callable[[], AbstractAsyncContextManager[AsyncConnection[Any]]]
BatchQuery = Callable[[AsyncConnection[Any], dict[str, Any]], Awaitable[store.Row]]


@dataclass(frozen=True)
class JobFilter:
    """Which of a company's jobs a bulk change touches: statuses (a subset of CANCELABLE or
    RETRYABLE), and optionally one job type and one source task id."""

    statuses: tuple[str, ...]
    job_type: str | None = None
    source_task_id: str | None = None

    def params(self, company_id: uuid.UUID) -> dict[str, Any]:
        return {
            "company_id": company_id,
            "statuses": list(self.statuses),
            "job_type": self.job_type,
            "source_task_id": self.source_task_id,
        }


async def cancel_matching(connect: Connect, company_id: uuid.UUID, job_filter: JobFilter) -> int:
    """Cancel the company's queued/running jobs that match; how many were canceled."""
    _check(job_filter, CANCELABLE)
    return await _in_batches(connect, store.cancel_jobs_matching, job_filter.params(company_id))


async def retry_matching(connect: Connect, company_id: uuid.UUID, job_filter: JobFilter) -> int:
    """Queue the company's failed/canceled jobs that match again; how many were."""
    _check(job_filter, RETRYABLE)
    return await _in_batches(connect, store.retry_jobs_matching, job_filter.params(company_id))


async def count_matching(
    conn: AsyncConnection[Any], company_id: uuid.UUID, job_filter: JobFilter
) -> int:
    """How many jobs a bulk change with this filter would change now (a dry run)."""
    return await store.count_jobs_matching(conn, job_filter.params(company_id))


def _check(job_filter: JobFilter, allowed: tuple[str, ...]) -> None:
    if not job_filter.statuses or not set(job_filter.statuses) <= set(allowed):
        raise ValueError(f"statuses must be a non-empty subset of {allowed}")


async def _in_batches(connect: Connect, run: BatchQuery, params: dict[str, Any]) -> int:
    """Run the batch statement until a batch matches fewer than BATCH jobs; the total
    changed. The first batch fixes the cutoff every later one uses."""
    total = 0
    cutoff: datetime | None = None
    while True:
        row = await _one_batch(connect, run, {**params, "cutoff": cutoff, "limit": BATCH})
        total += int(row["changed"])
        cutoff = row["cutoff"]
        if row["matched"] < BATCH:
            return total


async def _one_batch(connect: Connect, run: BatchQuery, params: dict[str, Any]) -> store.Row:
    for attempt in range(DEADLOCK_RETRIES):
        try:
            # A connection per batch: the API's pool serves other requests in between.
            async with connect() as conn:
                return await run(conn, params)
        except psycopg.errors.DeadlockDetected:
            if attempt == DEADLOCK_RETRIES - 1:
                raise
            await asyncio.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")
