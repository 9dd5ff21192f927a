"""The jobs a worker holds, their leases, and noticing when one is no longer ours.

Two loops watch the held jobs:
- `renew`: every lease/3 seconds, one statement extends every held lease (and refreshes the
  worker's last_seen_at). A job missing from its result is lost. If renewals fail (the
  database is down), handlers keep running; a job is given up only once its lease has run
  out since the last renewal that succeeded, when a rescuer may already have taken it.
- `watch`: every 500 ms while handlers run, a read-only query finds held jobs that are no
  longer running under this worker and attempt: canceled (in the API or by hand in psql) or
  taken back. Their handlers are stopped within a second.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from skiplock import store

WATCH_INTERVAL = 0.5

log = logging.getLogger(__name__)


@dataclass(slots=True)
class HeldJob:
    """A claimed job, from the claim until its outcome is written."""

    row: dict[str, Any]
    lease_deadline: float  # time.monotonic() after which the lease may have run out
    running: bool = True  # the handler has not returned yet
    ended: bool = False  # the attempt is over: slot freed, outcome handed on (once)
    task: asyncio.Task[None] | None = None  # the job's task, where its handler runs
    stop_reason: str | None = None  # canceled | lease_lost | shutdown, once stopped
    started: float = field(default_factory=time.monotonic)
    # Called by stop(): the runner's wake-up while it waits on the handler. A callback, not
    # a future or an Event: nothing is made per job unless a job is actually stopped.
    on_stop: Callable[[], None] | None = None

    def stop(self, reason: str) -> bool:
        """Ask the handler to stop; False if it already ended or was already stopped."""
        if not self.running or self.stop_reason is not None:
            return False
        self.stop_reason = reason
        if self.on_stop is not None:
            self.on_stop()
        return True

    @property
    def id(self) -> uuid.UUID:
        job_id: uuid.UUID = self.row["id"]
        return job_id

    @property
    def attempt(self) -> int:
        attempt: int = self.row["attempts"]
        return attempt


StopJob = Callable[[uuid.UUID, str], None]  # (job id, reason)


class Leases:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        worker_id: str,
        lease_seconds: float,
        held: dict[uuid.UUID, HeldJob],
        stop_job: StopJob,
    ) -> None:
        self._pool = pool
        self._worker_id = worker_id
        self.lease_seconds = lease_seconds
        self._held = held
        self._stop_job = stop_job
        self.renew_interval = lease_seconds / 3

    def deadline_from(self, started: float) -> float:
        """The monotonic time a lease taken or renewed by a statement sent at `started` ends."""
        return started + self.lease_seconds

    def lost(self, job_id: uuid.UUID) -> bool:
        """True once the job's lease has run out since its last successful renewal."""
        job = self._held.get(job_id)
        return job is None or time.monotonic() > job.lease_deadline

    async def renew(self) -> None:
        while True:
            await asyncio.sleep(self.renew_interval)
            await self.renew_once()

    async def renew_once(self) -> None:
        held = {job.id: job.attempt for job in self._held.values()}
        started = time.monotonic()
        try:
            async with self._pool.connection() as conn:
                still_held = await store.renew_leases(
                    conn, worker_id=self._worker_id, held=held, lease_seconds=self.lease_seconds
                )
        except psycopg.Error as exc:
            log.warning("lease renewal failed (%s); handlers keep running", type(exc).__name__)
            self._give_up_expired()
            return
        for job_id in held:
            job = self._held.get(job_id)
            if job is None:
                continue
            if job_id in still_held:
                job.lease_deadline = self.deadline_from(started)
            else:
                self._stop_job(job_id, "lease_lost")

    def _give_up_expired(self) -> None:
        now = time.monotonic()
        for job in list(self._held.values()):
            if now > job.lease_deadline:
                self._stop_job(job.id, "lease_lost")

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            await self.watch_once()

    async def watch_once(self) -> None:
        running = [job for job in self._held.values() if job.running]
        if not running:
            return
        params = {
            "worker_id": self._worker_id,
            "job_ids": [job.id for job in running],
            "attempts": [job.attempt for job in running],
        }
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(store.query("check_held_jobs"), params, prepare=True)
                changed = await cursor.fetchall()
        except psycopg.Error:
            return  # the renewal loop decides what an outage means for leases
        for job_id, status, _locked_by, _attempts in changed:
            self._stop_job(job_id, "canceled" if status == "canceled" else "lease_lost")
