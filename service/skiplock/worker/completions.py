"""Writing the outcome of attempts, in batches: done (with its asset row), failed, or queued.

Every transaction that changes a job rings NOTIFY, and notifying commits are serialised
cluster-wide, so outcomes that arrive together are written together: a finished attempt
hands its outcome to `CompletionWriter.submit` with a callback; the writer waits while the
previous batch commits and then writes everything that gathered meanwhile in one statement
per reason (usually one), and calls back. A done job's asset row is written by the same
statement, so the two commit together.

During a database outage the writer keeps retrying; an outcome is given up only once its
job's lease is known lost (another worker may have it by then, and the fence would refuse
the write anyway).

A batch Postgres refuses for its data (not for an outage) is written again row by row, and a
row refused on its own fails its job with a message saying why, without its asset or
progress: one poisoned outcome never holds up the others, nor stays `running` forever.
Texts are cleaned before any of this (worker/sanitize.py), so that path is a last resort.
The writer task itself survives any exception: a batch it cannot write is logged and left
to the lease, which brings those jobs back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from skiplock import store
from skiplock.storage import StoredObject
from skiplock.worker import sanitize

MAX_BATCH = 500
RETRY_DELAYS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredAsset:
    asset_id: uuid.UUID
    stored: StoredObject
    content_type: str
    filename: str


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended. status is done, failed or queued (retry or hand-back)."""

    job_id: uuid.UUID
    attempt: int
    status: str
    reason: str = ""  # why a queued outcome went back: error, timeout or shutdown
    error_message: str | None = None
    run_at: datetime | None = None  # queued: not before
    refund: bool = False  # queued at shutdown: the attempt is not spent
    asset: StoredAsset | None = None


# Called once per outcome: with what was written (the outcome cleaned, or a failure in its
# place when Postgres refused it) or None when the job was no longer ours; known=False when
# the writer cannot tell whether the commit landed (a bug stopped it mid-batch).
Written = Callable[["Outcome | None", bool], None]
TakeProgress = Callable[[uuid.UUID], dict[str, Any] | None]
SettleProgress = Callable[[list[uuid.UUID]], Awaitable[None]]
LeaseLost = Callable[[uuid.UUID], bool]
Progress = dict[uuid.UUID, dict[str, Any] | None]


class _Refused(Exception):
    """Postgres (or psycopg) refused the data of a write: the same write would fail again."""

    def __init__(self, cause: BaseException) -> None:
        self.cause = cause
        super().__init__(f"{type(cause).__name__}: {str(cause).strip()}")


def clean_outcome(outcome: Outcome) -> Outcome:
    """The outcome with its error message made storable (worker/sanitize.py). The asset's
    filename and content type were cleaned when it was stored (Runner._store). Most
    outcomes carry no message and go through as they are: no copy per job."""
    if outcome.error_message is None:
        return outcome
    return dataclasses.replace(
        outcome, error_message=sanitize.clean_error_message(outcome.error_message)
    )


class CompletionWriter:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        worker_id: str,
        *,
        take_progress: TakeProgress,
        lease_lost: LeaseLost,
        settle_progress: SettleProgress | None = None,
    ) -> None:
        self._pool = pool
        self._worker_id = worker_id
        self._take_progress = take_progress
        self._settle_progress = settle_progress
        self._lease_lost = lease_lost
        self._queue: list[tuple[Outcome, Written]] = []
        self._arrived = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self.batches = 0

    def submit(self, outcome: Outcome, written: Written) -> None:
        """Write the outcome with the next batch, then call written(what was written, True),
        or written(None, True) if the job was no longer ours. No future and no waiting task
        per job: the worker's job task ends with its handler (about 2 us of the worker's
        Python a job)."""
        self._queue.append((clean_outcome(outcome), written))
        self._drained.clear()
        self._arrived.set()

    async def write(self, outcome: Outcome) -> Outcome | None:
        """submit() for a caller that waits: what was written, or None if no longer ours (or
        not known to be written)."""
        future: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()

        def written(what: Outcome | None, known: bool) -> None:
            if not future.done():
                future.set_result(what)

        self.submit(outcome, written)
        return await future

    async def drained(self, timeout: float) -> bool:
        """Wait (at most timeout seconds) until every outcome submitted so far is written;
        False if some still were not."""
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                written: dict[uuid.UUID, Outcome] | None = None
                try:
                    written = await self._write_batch([outcome for outcome, _ in batch])
                except Exception:  # a bug: never let it take the writer (and the worker) down
                    log.exception(
                        "writing %d outcome(s) failed unexpectedly; their jobs come back "
                        "when their leases run out",
                        len(batch),
                    )
                finally:
                    _call_back(batch, written)
            self._drained.set()

    async def _write_batch(self, outcomes: list[Outcome]) -> dict[uuid.UUID, Outcome]:
        """What was written, by job id."""
        if self._settle_progress is not None:  # a progress write of these jobs must land first
            await self._settle_progress([o.job_id for o in outcomes])
        progress = {o.job_id: self._take_progress(o.job_id) for o in outcomes}
        try:
            ids = await self._retry(outcomes, progress)
            written = {o.job_id: o for o in outcomes if o.job_id in ids}
        except _Refused as refused:
            log.warning(
                "writing %d outcome(s) was refused (%s); writing them one by one",
                len(outcomes),
                refused,
            )
            written = await self._one_by_one(outcomes, progress)
        self.batches += 1
        return written

    async def _one_by_one(
        self, outcomes: list[Outcome], progress: Progress
    ) -> dict[uuid.UUID, Outcome]:
        """Each outcome alone; one that is refused again fails its job, saying why."""
        written: dict[uuid.UUID, Outcome] = {}
        for outcome in outcomes:
            try:
                if outcome.job_id in await self._retry([outcome], progress):
                    written[outcome.job_id] = outcome
                continue
            except _Refused as refused:
                instead = Outcome(
                    outcome.job_id,
                    outcome.attempt,
                    "failed",
                    error_message=sanitize.clean_error_message(
                        f"the attempt's outcome could not be stored ({refused})"
                    ),
                )
            try:  # without the asset or progress that carried the trouble
                if outcome.job_id in await self._retry([instead], {}):
                    written[outcome.job_id] = instead
            except _Refused as refused:
                log.error(
                    "job %s: even a failure could not be stored (%s); its lease brings it back",
                    outcome.job_id,
                    refused,
                )
        return written

    async def _retry(self, outcomes: list[Outcome], progress: Progress) -> set[uuid.UUID]:
        """The ids written, retrying through outages until written or every lease is lost;
        _Refused when Postgres refuses the data itself (retrying would never end)."""
        failures = 0
        while True:
            try:
                return await self._write(outcomes, progress, retried=failures > 0)
            except Exception as exc:
                if not sanitize.is_transient(exc):
                    raise _Refused(exc) from exc
                if failures == 0:
                    log.warning("writing %d outcome(s) failed (%s); retrying", len(outcomes), exc)
            outcomes = [o for o in outcomes if not self._lease_lost(o.job_id)]
            if not outcomes:
                return set()
            await asyncio.sleep(RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)])
            failures += 1

    async def _write(
        self,
        outcomes: list[Outcome],
        progress: dict[uuid.UUID, dict[str, Any] | None],
        *,
        retried: bool,
    ) -> set[uuid.UUID]:
        by_reason = sorted(outcomes, key=lambda o: o.reason)
        groups = [list(group) for _, group in groupby(by_reason, key=lambda o: o.reason)]
        written: set[uuid.UUID] = set()
        async with self._pool.connection() as conn:
            if len(groups) == 1:
                written |= await self._finish(conn, groups[0], progress)
            else:
                async with conn.transaction():
                    for group in groups:
                        written |= await self._finish(conn, group, progress)
            if retried:
                written |= await self._landed_before(conn, outcomes, written)
        return written

    async def _finish(
        self,
        conn: psycopg.AsyncConnection[Any],
        outcomes: list[Outcome],
        progress: dict[uuid.UUID, dict[str, Any] | None],
    ) -> set[uuid.UUID]:
        def column(get: Callable[[Outcome], Any]) -> list[Any]:
            return [get(o) for o in outcomes]

        def asset_column(get: Callable[[StoredAsset], Any]) -> list[Any]:
            return [get(o.asset) if o.asset else None for o in outcomes]

        params = {
            "worker_id": self._worker_id,
            "reason": outcomes[0].reason or "",
            "job_ids": column(lambda o: o.job_id),
            "attempts": column(lambda o: o.attempt),
            "statuses": column(lambda o: o.status),
            "error_messages": column(lambda o: o.error_message),
            "run_ats": column(lambda o: o.run_at),
            "refunds": column(lambda o: o.refund),
            "progress": [_jsonb(progress.get(o.job_id)) for o in outcomes],
            "asset_ids": asset_column(lambda a: a.asset_id),
            "providers": asset_column(lambda a: a.stored.provider),
            "object_keys": asset_column(lambda a: a.stored.object_key),
            "content_types": asset_column(lambda a: a.content_type),
            "byte_sizes": asset_column(lambda a: a.stored.byte_size),
            "sha256s": asset_column(lambda a: a.stored.sha256),
            "filenames": asset_column(lambda a: a.filename),
        }
        cursor = await conn.execute(store.query("finish_jobs"), params, prepare=True)
        return {row[0] for row in await cursor.fetchall()}

    async def _landed_before(
        self,
        conn: psycopg.AsyncConnection[Any],
        outcomes: list[Outcome],
        written: set[uuid.UUID],
    ) -> set[uuid.UUID]:
        """After a failed attempt whose commit may have landed: the done jobs whose asset
        row exists were written then (keep their files)."""
        unsure = {
            o.asset.asset_id: o.job_id for o in outcomes if o.asset and o.job_id not in written
        }
        if not unsure:
            return set()
        cursor = await conn.execute(store.query("find_assets"), {"asset_ids": list(unsure)})
        return {unsure[row[0]] for row in await cursor.fetchall()}


def _call_back(
    batch: list[tuple[Outcome, Written]], written: dict[uuid.UUID, Outcome] | None
) -> None:
    """Tell each outcome's submitter what was written (written None: not known)."""
    for outcome, done in batch:
        try:
            if written is None:
                done(None, False)
            else:
                done(written.get(outcome.job_id), True)
        except Exception:  # a bug in a callback must not stop the writer
            log.exception("after writing the outcome of job %s", outcome.job_id)


def _jsonb(value: dict[str, Any] | None) -> Jsonb | None:
    return Jsonb(value) if value is not None else None
