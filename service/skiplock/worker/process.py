"""The worker process: N handler slots fed by one claimer.

Where a job is claimed: `Worker._claim_loop`. It claims as many due jobs as there are
free slots in one statement (sql/queries/claim_jobs.sql), starts a task per job, and when
the queue has run dry waits for a doorbell (LISTEN content_jobs_queued), for the earliest
retry it scheduled itself, or for the poll interval (1 s), whichever comes first.

Around it run: the listener (doorbells), the completion writer (outcomes in batches), the
progress writer, lease renewal and the cancel watch (leases.py), housekeeping
(maintenance.py, uploads.py, retention.py), webhook deliveries (webhooks.py) and schedule
ticks (schedules.py). Handlers never touch the database; everything they produce goes
through those batched writers, so a busy worker costs about one claim and one completion
statement per batch of jobs, not per job.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
import socket
import time
import uuid
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from skiplock import db, store
from skiplock.errors import ConfigError, SkiplockError
from skiplock.handlers import Registry, registry
from skiplock.listener import Listener
from skiplock.logs import fields
from skiplock.settings import Settings
from skiplock.storage import Storage
from skiplock.storage.registry import StorageRegistry, open_registry
from skiplock.worker import maintenance, retention
from skiplock.worker.children import child_limits
from skiplock.worker.completions import CompletionWriter, Outcome
from skiplock.worker.leases import HeldJob, Leases
from skiplock.worker.progress import ProgressWriter
from skiplock.worker.runner import Runner, elapsed_ms
from skiplock.worker.schedules import ScheduleTicker
from skiplock.worker.uploads import Uploads
from skiplock.worker.webhooks import DELIVERIES_CHANNEL, DeliverySender

QUEUED_CHANNEL = "content_jobs_queued"
POLL_INTERVAL = 1.0  # SPEC §2: workers poll at least every second
CLAIM_RETRY_DELAYS = (0.05, 0.1, 0.25, 0.5, 1.0)
SHUTDOWN_WRITE_SECONDS = 5.0  # after the grace, at most this long to hand jobs back
STOP_CHECK_SECONDS = 0.5  # how often a claim waiting for a pool connection checks for a stop
BACKLOG_SECONDS = 0.5  # how long a claim that filled every slot counts as a backlog
# No session settings: every worker statement keeps its plan whatever the statistics say by
# its own shape (statements on held jobs find them with id = ANY) or by its function's
# settings (claim_content_jobs, the event triggers), so the pool may sit behind a pooler in
# transaction mode.

log = logging.getLogger(__name__)


class WorkerCrashed(SkiplockError):
    """A background task of the worker ended on its own; the worker stopped (exit 2)."""


@dataclass(frozen=True)
class WorkerOptions:
    concurrency: int = 10
    job_types: tuple[str, ...] = ()  # empty: every registered type
    grace: float = 8.0


def tune_gc() -> None:
    """Start-up objects (modules, handlers, settings) live as long as the process: freeze
    them out of every collection, and collect the young generation less often. A busy
    worker allocates rows, tasks and futures by the thousand; with the default threshold
    (700) collections took 9% of a no-op drain's CPU (py-spy --native)."""
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def new_worker_id() -> str:
    """Unique per process start: host, pid, and a random suffix (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Worker:
    def __init__(
        self,
        settings: Settings,
        options: WorkerOptions,
        *,
        handlers: Registry = registry,
        storage: Storage | None = None,
    ) -> None:
        if options.concurrency < 1:
            raise ConfigError("skiplock: --concurrency must be at least 1")
        unknown = [t for t in options.job_types if t not in handlers]
        if unknown:
            raise ConfigError(
                f"skiplock: no handler is registered for job type(s) {', '.join(unknown)} "
                f"(registered: {', '.join(handlers.names()) or 'none'}); "
                "check --types and --handlers"
            )
        self.id = new_worker_id()
        self.settings = settings
        self.options = options
        self.job_types = list(options.job_types or handlers.names())
        self._handlers = handlers
        # Outputs go to SKIPLOCK_STORAGE's backend; orphans are removed from any reachable.
        self._storages: StorageRegistry = open_registry(settings, default=storage)
        self._held: dict[uuid.UUID, HeldJob] = {}
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._left_behind: set[asyncio.Task[None]] = set()  # handlers that would not stop
        self._doorbell = _Signal()
        self._slot_freed = _Signal()
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self._next_retry: float | None = None  # monotonic time of the earliest retry we set
        # The company this worker's last claim ended on: the next claim's turn goes on after
        # it, so companies take turns across claims too (claim_content_jobs).
        self._turn_after: uuid.UUID | None = None
        self._backlog_seen = 0.0  # monotonic time of the last claim that filled every slot
        self.started = asyncio.Event()  # set once registered and claiming
        self.jobs_finished = 0
        self.crashed: str | None = None  # the background task that ended on its own
        self._shutting_down = False

    # --------------------------------------------------------------------------------------
    # Lifecycle
    # --------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; running jobs get the grace to finish. A second call (a second
        Ctrl-C) hands them back at once."""
        if self._stopping.is_set():
            self._hurry.set()
        self._stopping.set()
        self._doorbell.set()  # wake the claim loop, wherever it waits
        self._slot_freed.set()

    async def run(self) -> None:
        """Work until stop(); then finish or hand back running jobs and return."""
        url = self.settings.require_database_url()
        listen_url = self.settings.require_listen_url()
        # One direct attempt first: a database that is down stops the worker at once with
        # one line, rather than after the pool's retries.
        await (await db.connect_async(url)).close()
        # Behind a transaction pooler no statement may be prepared (the next transaction
        # may run on another server connection).
        pool = await db.open_pool(
            url,
            min_size=2,
            max_size=8,
            name="worker",
            prepare=self.settings.prepared_statements,
        )
        try:
            await self._run_with(pool, listen_url)
        finally:
            await pool.close()
            await self._storages.aclose()

    async def _run_with(self, pool: AsyncConnectionPool, listen_url: str) -> None:
        self._pool = pool
        self._uploads = Uploads(pool, self.id, self._storages)
        self._progress = ProgressWriter(pool, self.id)
        self._leases = Leases(pool, self.id, self.settings.lease_seconds, self._held, self._stop)
        self._completions = CompletionWriter(
            pool,
            self.id,
            take_progress=self._progress.take,
            lease_lost=self._leases.lost,
            settle_progress=self._progress.settle,
        )
        s3 = self.settings.storage.s3
        self._runner = Runner(
            self._handlers,
            self._storages.default,
            max_output_bytes=self.settings.generated_asset_max_bytes,
            report_progress=self._progress.report,
            child_limits=child_limits(self.settings),
            child_env=self.settings.child_env,
            begin_upload=self._uploads.begin,
            key_prefix=s3.prefix if s3 and self._storages.default.provider == "s3" else "",
            on_abandon=self._end_attempt,
        )
        self._deliveries = DeliverySender(
            pool, self.id, allow_private=self.settings.webhook_allow_private, busy=self.backlogged
        )
        channels = [QUEUED_CHANNEL, DELIVERIES_CHANNEL]
        listener = Listener(listen_url, channels, self._on_notify, self._on_listen, name="worker")
        await self._register()
        background = [
            asyncio.create_task(coro, name=name)
            for name, coro in (
                ("listener", listener.run()),
                ("completion writer", self._completions.run()),
                ("progress writer", self._progress.run()),
                ("lease renewal", self._leases.renew()),
                ("cancel watch", self._leases.watch()),
                ("rescue", maintenance.rescue_forever(pool, self.settings.lease_seconds)),
                ("pruning", maintenance.prune_forever(pool, self.settings.event_retention_days)),
                ("upload sweep", self._uploads.sweep_forever()),
                *(("retention", loop) for loop in self._retention(pool)),
                # Webhook deliveries and schedule ticks: tasks of their own, never handler slots.
                ("webhook deliveries", self._deliveries.run_forever()),
                ("schedule ticks", ScheduleTicker(pool).run_forever()),
            )
        ]
        for task in background:
            task.add_done_callback(self._on_background_end)
        log.info(
            "worker started %s",
            fields(
                worker_id=self.id,
                job_types=",".join(self.job_types),
                concurrency=self.options.concurrency,
                lease_seconds=self.settings.lease_seconds,
            ),
        )
        self.started.set()
        try:
            await self._claim_loop()
            await self._finish_running()
        finally:
            self._shutting_down = True
            for task in [*background, *self._left_behind]:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._unregister()
            log.info("worker stopped %s", fields(worker_id=self.id))
        if self.crashed is not None:
            raise WorkerCrashed(
                f"skiplock: the worker's {self.crashed} task ended unexpectedly (see the log "
                "above); the worker stopped, and its unfinished jobs come back when their "
                "leases run out"
            )

    def _on_background_end(self, task: asyncio.Task[None]) -> None:
        """A background task ended on its own: without it the worker is half alive (claiming
        jobs whose outcomes nothing writes, say). Stop the whole process, loudly."""
        if self._shutting_down:
            return
        error = None if task.cancelled() else task.exception()
        log.critical(
            "worker: the %s task ended unexpectedly (%s); stopping the worker",
            task.get_name(),
            "cancelled" if task.cancelled() else repr(error),
            exc_info=error,
        )
        self.crashed = self.crashed or task.get_name()
        self.stop()
        self.stop()  # at once: running jobs may have no one to write their outcomes

    def _retention(self, pool: AsyncConnectionPool) -> list[Coroutine[Any, Any, None]]:
        """Job retention's loop, when SKIPLOCK_JOB_RETENTION_DAYS is set."""
        seconds = self.settings.job_retention_seconds()
        if seconds is None:
            return []
        return [retention.run_forever(pool, seconds, self._storages.find)]

    async def _register(self) -> None:
        params = {
            "id": self.id,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "job_types": self.job_types,
            "concurrency": self.options.concurrency,
        }
        async with self._pool.connection() as conn:
            await conn.execute(store.query("register_worker"), params)

    async def _unregister(self) -> None:
        with contextlib.suppress(psycopg.Error):
            async with self._pool.connection(timeout=2) as conn:
                await conn.execute(store.query("unregister_worker"), {"id": self.id})

    async def _finish_running(self) -> None:
        """Let running jobs finish within the grace, then hand the rest back."""
        late: set[asyncio.Task[None]] = set(self._tasks)
        if not late:
            await self._completions.drained(SHUTDOWN_WRITE_SECONDS)
            return
        grace = self.options.grace
        log.info("stopping: %d job(s) running, grace %.1f s", len(late), grace)
        deadline = time.monotonic() + grace
        while late and not self._hurry.is_set() and time.monotonic() < deadline:
            await _first_of(self._hurry, timeout=deadline - time.monotonic(), tasks=late)
            late = {task for task in late if not task.done()}
        for job in list(self._held.values()):
            job.stop("shutdown")
        if late:
            await asyncio.wait(late, timeout=SHUTDOWN_WRITE_SECONDS)
        # Outcomes are written after their job's task ends: let the last batch commit.
        if not await self._completions.drained(SHUTDOWN_WRITE_SECONDS):
            log.warning("stopping: some outcomes were not written; their leases bring them back")

    # --------------------------------------------------------------------------------------
    # Claiming
    # --------------------------------------------------------------------------------------

    def backlogged(self) -> bool:
        """Jobs were waiting for a free slot a moment ago (the last claims filled them all)."""
        return time.monotonic() - self._backlog_seen < BACKLOG_SECONDS

    def _on_notify(self, channel: str, payload: str) -> None:
        if channel == DELIVERIES_CHANNEL:
            self._deliveries.wake()
        elif payload in self.job_types:
            self._doorbell.set()

    async def _on_listen(self) -> None:
        self._doorbell.set()  # (re)connected: jobs may have rung while no one listened
        self._deliveries.wake()

    async def _claim_loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            free = self.options.concurrency - self._running
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                await asyncio.sleep(0)  # let the other handlers finishing now free theirs too
                continue
            self._doorbell.clear()
            try:
                claimed = await self._claim(free)
            except psycopg.Error as exc:
                if failures == 0:
                    log.warning("claiming failed (%s); retrying", _one_line(exc))
                delay = CLAIM_RETRY_DELAYS[min(failures, len(CLAIM_RETRY_DELAYS) - 1)]
                failures += 1
                await _first_of(self._stopping, timeout=delay)
                continue
            if failures:
                log.info("claiming works again")
            failures = 0
            if claimed == free:  # a backlog: webhook deliveries yield for a moment (webhooks.py)
                self._backlog_seen = time.monotonic()
            if claimed < free:
                await self._doorbell.wait(timeout=self._poll_timeout())

    async def _claim(self, limit: int) -> int:
        conn = await self._connection()
        if conn is None:
            return 0
        try:
            sent = time.monotonic()
            rows = await store.claim_jobs(
                conn,
                worker_id=self.id,
                job_types=self.job_types,
                limit=limit,
                lease_seconds=self.settings.lease_seconds,
                after=self._turn_after,
            )
        finally:
            await self._pool.putconn(conn)
        if rows:
            self._turn_after = rows[-1]["company_id"]  # the rows come in turn order
        deadline = self._leases.deadline_from(sent)
        for row in rows:
            self._start(HeldJob(row, lease_deadline=deadline))
        return len(rows)

    async def _connection(self) -> psycopg.AsyncConnection[Any] | None:
        """A pool connection for the claim, or None once the worker stops. During an outage
        the pool waits up to its timeout (30 s) for one, past Docker's 10 s stop timeout, so
        the wait goes in steps of STOP_CHECK_SECONDS with a look at the stop signal between
        them; when a connection is free (every claim of a running queue) it is one await,
        with no task or waiter made."""
        deadline = time.monotonic() + self._pool.timeout
        while not self._stopping.is_set():
            step = min(STOP_CHECK_SECONDS, max(deadline - time.monotonic(), 0.0))
            try:
                return await self._pool.getconn(timeout=step)
            except PoolTimeout:
                if time.monotonic() >= deadline:
                    raise  # a psycopg.Error: the claim loop logs it and retries
        return None

    def _poll_timeout(self) -> float:
        """Until the next poll, or the earliest retry this worker scheduled if sooner."""
        timeout = POLL_INTERVAL
        if self._next_retry is not None:
            until = self._next_retry - time.monotonic()
            if until <= timeout:
                self._next_retry = None
                timeout = max(until, 0.0) + 0.01  # now() in Postgres may trail our clock
        return timeout

    # --------------------------------------------------------------------------------------
    # Running
    # --------------------------------------------------------------------------------------

    def _start(self, job: HeldJob) -> None:
        self._held[job.id] = job
        self._running += 1
        job.task = task = asyncio.create_task(self._run_job(job), name=f"job-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_job(self, job: HeldJob) -> None:
        if log.isEnabledFor(logging.INFO):  # skip making the fields: a busy worker's hot path
            log.info("job running %s", _JobFields(job))
        try:
            outcome = await self._runner.run(job)
        except Exception:  # a bug in skiplock itself: let the lease bring the job back
            log.exception("job crashed the runner %s", _JobFields(job))
            outcome = None
        self._end_attempt(job, outcome)

    def _end_attempt(self, job: HeldJob, outcome: Outcome | None) -> None:
        """The attempt is over (its handler returned, or was left behind): free the slot and
        hand the outcome to the completion writer. Once per attempt."""
        if job.ended:
            return
        job.ended = True
        if job.task is not None and not job.task.done():  # left behind: nobody waits for it
            self._tasks.discard(job.task)
            self._left_behind.add(job.task)
            job.task.add_done_callback(self._left_behind.discard)
        job.running = False
        self._running -= 1
        self._slot_freed.set()
        if outcome is None:
            log.info("job stopped %s", _JobFields(job, reason=job.stop_reason))
            self._forget(job, committed=False)
            return
        self._completions.submit(outcome, partial(self._written, job))

    def _written(self, job: HeldJob, written: Outcome | None, known: bool = True) -> None:
        """The completion writer's answer: the outcome written (cleaned, or a failure without
        its asset in its place when Postgres refused it), or None when the job was no longer
        ours; known=False when the writer cannot tell whether its commit landed."""
        committed: bool | None = None if not known else written is not None and bool(written.asset)
        try:
            if written is not None:
                self._log_written(job, written)
            elif known:
                log.warning("job outcome not written: no longer ours %s", _JobFields(job))
        finally:
            self._forget(job, committed=committed)

    def _log_written(self, job: HeldJob, outcome: Outcome) -> None:
        self.jobs_finished += 1
        level = logging.INFO if outcome.status == "done" else logging.WARNING
        if log.isEnabledFor(level):
            status = outcome.status if not outcome.reason else f"queued ({outcome.reason})"
            log.log(
                level,
                "job %s %s",
                status,
                _JobFields(
                    job,
                    asset_id=outcome.asset.asset_id if outcome.asset else None,
                    retry_at=outcome.run_at.isoformat() if outcome.run_at else None,
                    error=outcome.error_message,
                ),
            )
        if outcome.run_at is not None and not outcome.refund:
            self._note_retry(outcome.run_at.timestamp() - time.time())

    def _forget(self, job: HeldJob, *, committed: bool | None) -> None:
        """The attempt is over here. An output whose asset row surely did not commit is
        removed now; one whose commit may have landed (committed None) is left to the sweep,
        which only takes it once its attempt is over without an asset row."""
        self._progress.take(job.id)
        self._held.pop(job.id, None)
        removal = self._uploads.settle(job.id, committed=committed)
        if removal is not None:
            self._spawn(removal)

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run work in a task shutdown waits for, like a job's."""
        task = asyncio.create_task(_quietly(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _note_retry(self, seconds_from_now: float) -> None:
        at = time.monotonic() + max(seconds_from_now, 0.0)
        if self._next_retry is None or at < self._next_retry:
            self._next_retry = at

    def _stop(self, job_id: uuid.UUID, reason: str) -> None:
        job = self._held.get(job_id)
        if job is not None and job.stop(reason):
            log.warning("job stopping %s", _JobFields(job, reason=reason))


class _Signal:
    """A flag the claim loop sleeps on (a doorbell, a freed slot), like asyncio.Event but
    for one waiter, woken directly: set() resolves the waiting future, with no task per
    wait and no extra loop turns on the way from a NOTIFY to the claim (wake-up latency)."""

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._set = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    async def wait(self, timeout: float | None = None) -> None:
        """Return once set, or after timeout."""
        if self._set:
            return
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timer = loop.call_later(timeout, _resolve, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _JobFields:
    """A job's log fields, formatted only if the line is emitted: the per-job INFO lines
    cost nothing on the hot path when SKIPLOCK_LOG_LEVEL=warning."""

    def __init__(self, job: HeldJob, **extra: Any) -> None:
        self.job = job
        self.extra = extra
        self.duration_ms = None if job.running else elapsed_ms(job)

    def __str__(self) -> str:
        row = self.job.row
        return fields(
            job_id=row["id"],
            job_type=row["job_type"],
            company_id=row["company_id"],
            attempt=row["attempts"],
            duration_ms=self.duration_ms,
            **self.extra,
        )


async def _quietly(work: Coroutine[Any, Any, Any]) -> None:
    with contextlib.suppress(OSError):
        await work


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


async def _first_of(
    *events: asyncio.Event,
    timeout: float | None = None,
    tasks: Iterable[asyncio.Future[Any]] = (),
) -> None:
    """Return when any event is set, any of `tasks` ends, or after timeout."""
    if any(event.is_set() for event in events):
        return
    waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(e.wait()) for e in events}
    try:
        await asyncio.wait(waiters | set(tasks), timeout=timeout, return_when="FIRST_COMPLETED")
    finally:
        for waiter in waiters:
            waiter.cancel()


async def run_until_signalled(worker: Worker) -> None:
    """Run the worker; SIGTERM/SIGINT stop it gracefully, a second one hands back at once."""
    import signal

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop)
    try:
        await worker.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def served_types(raw: Sequence[str] | None) -> tuple[str, ...]:
    """--types a,b (repeatable) as a tuple; empty means every registered type."""
    types: list[str] = []
    for part in raw or ():
        types.extend(t.strip() for t in part.split(",") if t.strip())
    return tuple(dict.fromkeys(types))
