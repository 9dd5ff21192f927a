"""Running one claimed job: check its input, call its handler, store its output, decide its outcome.

An async handler runs in the job's own task (a `def` handler in its own thread, awaited
there). The job's timeout or its stop signal (canceled, lease lost, shutdown) cuts it short:
`ctx.cancelled` is set, its child processes are killed as a group, and it is cancelled
where it waits. A handler that will not let go within UNWIND_SECONDS is left behind: the
worker moves on without it (the runner's `on_abandon`). Whatever ends the attempt, done
included, the process groups of its children are killed, the context refuses new children
and workdirs, and the workdir is removed, before the task ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from skiplock.handlers import InvalidInput, JobType, Output, PermanentError, Registry
from skiplock.ids import uuid7
from skiplock.storage import AssetTooLarge, Storage, bytes_chunks, file_chunks, object_key_for
from skiplock.worker import retry_policy, sanitize
from skiplock.worker.children import ChildLimits
from skiplock.worker.completions import Outcome, StoredAsset
from skiplock.worker.context import JobContext
from skiplock.worker.leases import HeldJob

# How long a stopped async handler gets to unwind after its cancellation before the worker
# moves on without it (its children are already dead by then).
UNWIND_SECONDS = 1.0

log = logging.getLogger(__name__)

ReportProgress = Callable[[uuid.UUID, int, dict[str, Any]], None]
# Called before an output's upload starts: (job id, attempt, provider, object key).
BeginUpload = Callable[[uuid.UUID, int, str, str], Awaitable[None]]
# Called when a cut-short handler does not let go in time: the attempt ends with this
# outcome (None: nothing to write) while the handler goes on, ignored, in its task.
Abandon = Callable[[HeldJob, "Outcome | None"], None]


class _Stopped(Exception):
    """The handler was stopped from outside (the reason is on the HeldJob)."""


class Runner:
    def __init__(
        self,
        registry: Registry,
        storage: Storage,
        *,
        max_output_bytes: int,
        report_progress: ReportProgress,
        child_limits: ChildLimits | None = None,
        child_env: tuple[str, ...] = (),
        begin_upload: BeginUpload | None = None,
        key_prefix: str = "",
        on_abandon: Abandon | None = None,
    ) -> None:
        self._registry = registry
        self._storage = storage
        self._max_output_bytes = max_output_bytes
        self._report_progress = report_progress
        self._child_limits = child_limits or ChildLimits(file_bytes=max_output_bytes)
        self._child_env = child_env
        self._begin_upload = begin_upload
        self._key_prefix = key_prefix  # SKIPLOCK_S3_PREFIX: part of the stored object key
        self._on_abandon = on_abandon

    async def run(self, job: HeldJob) -> Outcome | None:
        """The attempt's outcome, or None when there is nothing to write (canceled, lost)."""
        row = job.row
        try:
            job_type = self._registry.get(row["job_type"])
            job_type.check_input(row["input"])
        except InvalidInput as exc:
            return _failed(job, f"invalid input: {exc}")
        except Exception as exc:  # UnknownJobType: claimed only for served types, but be safe
            return _failed(job, str(exc))

        ctx = self._context(job)
        try:
            output = await self._call(job, job_type, ctx)
            return _done(job, await self._store(job, output, ctx))
        except _Stopped:
            return _after_stop(job)
        except TimeoutError:
            return _retry_or_fail(job, "timeout", f"timed out after {_timeout(job, job_type)} s")
        except (PermanentError, AssetTooLarge) as exc:
            return _failed(job, str(exc) or type(exc).__name__)
        except Exception as exc:
            return _retry_or_fail(job, "error", _describe(exc))
        finally:
            ctx.cancelled.set()
            ctx.end()  # every child's group killed, done included; no new ones from now on
            if ctx._workdir is not None:
                await asyncio.to_thread(ctx.remove_workdir)

    def _context(self, job: HeldJob) -> JobContext:
        row = job.row
        return JobContext(
            job_id=row["id"],
            company_id=row["company_id"],
            job_type=row["job_type"],
            attempt=row["attempts"],
            source_task_id=row["source_task_id"],
            cancelled=asyncio.Event(),
            _report_progress=lambda value: self._report_progress(row["id"], job.attempt, value),
            _loop=asyncio.get_running_loop(),
            _limits=self._child_limits,
            _child_env=self._child_env,
        )

    async def _call(self, job: HeldJob, job_type: JobType, ctx: JobContext) -> Any:
        """The handler's return value; TimeoutError or _Stopped when it was cut short.

        An async handler is awaited right here, in the job's task: a task of its own, raced
        against the stop and the timeout, cost about 4.5 us of the worker's Python a job
        (alternating drains). A `def` handler's thread is awaited the same way."""
        params = job.row["input"]
        call: Awaitable[Any]
        if job_type.is_async:
            call = job_type.handler(ctx, params)
        else:
            call = _in_thread(job_type.handler, ctx, params, name=f"skiplock-{ctx.job_id}")
        cut = _Interrupt(job, ctx, _timeout(job, job_type), self._on_abandon)
        try:
            value = await call
        except asyncio.CancelledError:
            if not cut.reason or cut.task.uncancel() > 0:
                raise  # cancelled by someone else (the loop is closing): not ours to handle
            cut.reason_error()
            raise  # pragma: no cover  (reason_error always raises)
        finally:
            cut.close()
        if cut.reason:  # it was cut short, but let go with a value: the cut still wins
            cut.task.uncancel()
            cut.reason_error()
        return value

    async def _store(self, job: HeldJob, output: Any, ctx: JobContext) -> StoredAsset | None:
        if output is None:
            return None
        if not isinstance(output, Output):
            raise PermanentError(
                f"handler returned {type(output).__name__}; expected skiplock.Output or None"
            )
        asset_id = uuid7()  # time-ordered: see skiplock/ids.py
        # Cleaned once, before the bytes go anywhere: the object's metadata (S3's
        # Content-Type and Content-Disposition) and the asset row say the same.
        filename = sanitize.clean_filename(output.filename)
        content_type = sanitize.clean_content_type(output.content_type)
        key = self._key_prefix + object_key_for(
            job.row["company_id"], filename, now=datetime.now(UTC), object_id=asset_id
        )
        if output.data is not None:
            chunks = bytes_chunks(output.data)
        else:
            path = Path(output.path or "")
            chunks = file_chunks(path if path.is_absolute() else ctx.workdir / path)
        if self._begin_upload is not None:  # recorded first: an orphan can always be found
            await self._begin_upload(job.id, job.attempt, self._storage.provider, key)
        stored = await self._storage.put(
            key,
            chunks,
            max_bytes=self._max_output_bytes,
            content_type=content_type,
            filename=filename,
        )
        return StoredAsset(asset_id, stored, content_type, filename)


class _Interrupt:
    """Cuts a handler short, in the job's task: on a stop (job.stop) or at the timeout,
    tells it (ctx.cancelled), kills its children and cancels the task where it waits. If
    it has not let go UNWIND_SECONDS later, on_abandon ends the attempt without it."""

    def __init__(
        self, job: HeldJob, ctx: JobContext, timeout: float | None, on_abandon: Abandon | None
    ) -> None:
        self.job, self.ctx, self.timeout, self.on_abandon = job, ctx, timeout, on_abandon
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a handler runs in its job's task")
        self.task = task
        self.reason = ""  # stop | timeout, once cut short
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._timer = loop.call_later(timeout, self.cut, "timeout") if timeout else None
        self._unwind: asyncio.TimerHandle | None = None
        job.on_stop = self.stop
        if job.stop_reason is not None:  # stopped before the handler began
            self.stop()

    def stop(self) -> None:
        self.cut("stop")

    def cut(self, reason: str) -> None:
        if self.reason:
            return
        self.reason = reason
        self.ctx.cancelled.set()
        self.ctx.kill_children()
        self.task.cancel()
        self._unwind = self._loop.call_later(UNWIND_SECONDS, self._abandon)

    def reason_error(self) -> None:
        """Raise what ended the attempt: a stop wins over the timeout."""
        if self.job.stop_reason is not None:
            raise _Stopped from None
        raise TimeoutError from None

    def close(self) -> None:
        self.job.on_stop = None
        for handle in (self._timer, self._unwind):
            if handle is not None:
                handle.cancel()

    def _abandon(self) -> None:
        if self.on_abandon is None or self.task.done():
            return
        log.warning("job %s: its handler did not stop within %.0f s; moving on without it",
                    self.job.id, UNWIND_SECONDS)  # fmt: skip
        self.ctx.end()  # its children die with the attempt, and it can start no new ones
        if self.job.stop_reason is not None:
            self.on_abandon(self.job, _after_stop(self.job))
        else:
            self.on_abandon(
                self.job, _retry_or_fail(self.job, "timeout", f"timed out after {self.timeout} s")
            )


def _timeout(job: HeldJob, job_type: JobType) -> float | None:
    own = job.row.get("timeout_seconds")
    return float(own) if own else job_type.timeout


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _done(job: HeldJob, asset: StoredAsset | None) -> Outcome:
    return Outcome(job.id, job.attempt, "done", asset=asset)


def _failed(job: HeldJob, message: str) -> Outcome:
    return Outcome(job.id, job.attempt, "failed", error_message=message)


def _retry_or_fail(job: HeldJob, reason: str, message: str) -> Outcome:
    if job.attempt >= job.row["max_attempts"]:
        attempts = f"attempt {job.attempt} of {job.row['max_attempts']}"
        return _failed(job, f"{message} ({attempts}, no attempts left)")
    run_at = retry_policy.next_run_at(datetime.now(UTC), job.attempt)
    return Outcome(
        job.id, job.attempt, "queued", reason=reason, error_message=message, run_at=run_at
    )


def _after_stop(job: HeldJob) -> Outcome | None:
    if job.stop_reason == "shutdown":
        # Handed back without spending the attempt.
        return Outcome(job.id, job.attempt, "queued", reason="shutdown", refund=True)
    return None  # canceled (it stays canceled) or lease lost (someone else has it)


def _in_thread(function: Callable[..., Any], *args: Any, name: str) -> asyncio.Future[Any]:
    """Run a `def` handler in a thread of its own. A pool could be filled by handlers that
    ignore cancellation; a dedicated thread that outlives its job harms no other job."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def target() -> None:
        try:
            result, error = function(*args), None
        except BaseException as exc:  # handed to the loop, like any handler error
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: the worker has exited
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future


def elapsed_ms(job: HeldJob) -> int:
    return int((time.monotonic() - job.started) * 1000)
