"""Schedule ticks (SPEC §7): any worker enqueues the job of a schedule whose next run has
passed, once per tick however many workers run.

One transaction per batch: lock the due schedules (FOR UPDATE SKIP LOCKED), decide each
one's tick and next run (`Rule.plan_tick`, pure: the latest tick at or before now, so ticks
missed while no worker ran collapse into one), insert their jobs in one statement with the
idempotency key schedule:<id>:<tick> (unique per company: ON CONFLICT DO NOTHING), and move
the schedules on. A job is an ordinary job: its events, webhooks and the company's limits
apply. The ticker sleeps until the earliest next run, and at most a second: while nothing
is due, one statement a second.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from skiplock import store
from skiplock.events import utc_text
from skiplock.logs import fields
from skiplock.schedules import InvalidSchedule, Rule

BATCH = 100
POLL_SECONDS = 1.0
LOCKED_RETRY_SECONDS = 0.05
RETRY_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0)
UNUSABLE_RETRY = timedelta(hours=1)

log = logging.getLogger(__name__)


def tick_key(schedule_id: uuid.UUID, tick: datetime) -> str:
    """The job's idempotency key for this (schedule, tick): one job per tick, ever."""
    return f"schedule:{schedule_id}:{utc_text(tick)}"


class ScheduleTicker:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool
        self.enqueued = 0

    async def run_forever(self) -> None:
        failures = 0
        while True:
            try:
                # One statement a second while nothing is due; the claim's transaction only
                # when something is.
                wait = await self._until_next_due()
                if wait <= 0:
                    while await self.run_once() == BATCH:
                        pass  # a full batch: more may be due
                    # Still due now means another worker holds those schedules (SKIP LOCKED):
                    # look again shortly rather than at once.
                    wait = max(await self._until_next_due(), LOCKED_RETRY_SECONDS)
                failures = 0
            except psycopg.Error as exc:
                if failures == 0:
                    log.warning("schedule ticks failed (%s); retrying", exc)
                wait = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
            await asyncio.sleep(wait)

    async def run_once(self) -> int:
        """Enqueue the jobs of up to BATCH due schedules; how many schedules were due."""
        async with self._pool.connection() as conn, conn.transaction():
            due = await store.rows(conn, "claim_due_schedules", {"limit": BATCH})
            if not due:
                return 0
            plans = [_plan(row) for row in due]
            runnable = [(row, plan) for row, plan in zip(due, plans, strict=True) if plan.key]
            enqueued = await store.rows(
                conn,
                "enqueue_scheduled_jobs",
                {
                    "schedule_ids": [row["id"] for row, _ in runnable],
                    "keys": [plan.key for _, plan in runnable],
                },
            )
            job_ids = {row["idempotency_key"]: row["id"] for row in enqueued}
            await store.rows(
                conn,
                "advance_schedules",
                {
                    "schedule_ids": [row["id"] for row in due],
                    "next_run_ats": [plan.next_run for plan in plans],
                    "ticks": [plan.tick for plan in plans],
                    "job_ids": [job_ids.get(plan.key or "") for plan in plans],
                },
            )
        self.enqueued += len(enqueued)
        for row, plan in runnable:
            if plan.key not in job_ids:
                log.warning(
                    "schedule tick made no job (the company is at its max_queued) %s",
                    fields(schedule_id=row["id"], company_id=row["company_id"], tick=plan.tick),
                )
        return len(due)

    async def _until_next_due(self) -> float:
        async with self._pool.connection() as conn:
            rows = await store.rows(conn, "next_schedule_due", {})
        wait: timedelta | None = rows[0]["wait"] if rows else None
        if wait is None:
            return POLL_SECONDS
        return min(max(wait.total_seconds(), 0.0), POLL_SECONDS)


@dataclass(frozen=True)
class _Plan:
    tick: datetime
    next_run: datetime
    key: str | None  # the job's idempotency key; None: no job (the schedule is unusable)


def _plan(row: dict[str, Any]) -> _Plan:
    """What to do with a due schedule row (`now` is the transaction's)."""
    try:
        rule = Rule(
            cron=row["cron"], interval_seconds=row["interval_seconds"], timezone=row["timezone"]
        )
    except InvalidSchedule as exc:  # changed by hand in psql into something unusable
        log.warning("schedule %s cannot run (%s); looking again in an hour", row["id"], exc)
        return _Plan(row["now"], row["now"] + UNUSABLE_RETRY, None)
    tick, next_run = rule.plan_tick(row["next_run_at"], row["now"])
    return _Plan(tick, next_run, tick_key(row["id"], tick))
