"""Running one claimed job: check its input, call its handler, store its output, decide its outcome.

The handler runs as its own task (a `def` handler in its own thread), raced against the
job's timeout and its stop signal (canceled, lease lost, shutdown). Whatever ends the
race, the job's child processes are killed as a group and its workdir removed before the
outcome is handed to the completion writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from skiplock.handlers import InvalidInput, JobType, Output, PermanentError, Registry
from skiplock.storage import AssetTooLarge, Storage, bytes_chunks, file_chunks, object_key_for
from skiplock.worker import retry_policy
from skiplock.worker.completions import Outcome, StoredAsset
from skiplock.worker.context import JobContext
from skiplock.worker.leases import HeldJob

# How long a stopped async handler gets to unwind after its cancellation before the worker
# moves on without it (its children are already dead by then).
UNWIND_SECONDS = 1.0

log = logging.getLogger(__name__)

ReportProgress = Callable[[uuid.UUID, int, dict[str, Any]], None]


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
    ) -> None:
        self._registry = registry
        self._storage = storage
        self._max_output_bytes = max_output_bytes
        self._report_progress = report_progress

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
            ctx.kill_children()
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
        )

    async def _call(self, job: HeldJob, job_type: JobType, ctx: JobContext) -> Any:
        """The handler's return value; TimeoutError or _Stopped when it was cut short."""
        params = job.row["input"]
        handler: asyncio.Future[Any]
        if job_type.is_async:
            handler = asyncio.ensure_future(job_type.handler(ctx, params))
        else:
            handler = _in_thread(job_type.handler, ctx, params, name=f"skiplock-{ctx.job_id}")
        try:
            await _first_of(handler, job, _timeout(job, job_type))
            if handler.done():
                return handler.result()
            # Stopped or timed out: tell the handler, kill its children, cancel it.
            ctx.cancelled.set()
            ctx.kill_children()
            handler.cancel()
            await asyncio.wait({handler}, timeout=UNWIND_SECONDS)
            if job.stop_reason is not None:
                raise _Stopped
            raise TimeoutError
        finally:
            if handler.done() and not handler.cancelled():
                handler.exception()  # retrieved: an abandoned handler's error is not "lost"

    async def _store(self, job: HeldJob, output: Any, ctx: JobContext) -> StoredAsset | None:
        if output is None:
            return None
        if not isinstance(output, Output):
            raise PermanentError(
                f"handler returned {type(output).__name__}; expected skiplock.Output or None"
            )
        asset_id = uuid.uuid4()
        key = object_key_for(
            job.row["company_id"], output.filename, now=datetime.now(UTC), object_id=asset_id
        )
        if output.data is not None:
            chunks = bytes_chunks(output.data)
        else:
            path = Path(output.path or "")
            chunks = file_chunks(path if path.is_absolute() else ctx.workdir / path)
        stored = await self._storage.put(key, chunks, max_bytes=self._max_output_bytes)
        return StoredAsset(asset_id, stored, output.content_type, output.filename)


async def _first_of(handler: asyncio.Future[Any], job: HeldJob, timeout: float | None) -> None:
    """Return when the handler ends, the job is stopped, or the timeout passes. One future
    and two callbacks: asyncio.wait() did the same with sets, a waiter and a stop future
    per job (about 3 us of the worker's Python a job)."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(*_: object) -> None:
        if not waiter.done():
            waiter.set_result(None)

    handler.add_done_callback(wake)
    job.on_stop = wake
    timer = loop.call_later(timeout, wake) if timeout is not None else None
    if job.stop_reason is not None:  # stopped before the handler started
        wake()
    try:
        await waiter
    finally:
        job.on_stop = None
        handler.remove_done_callback(wake)
        if timer is not None:
            timer.cancel()


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
