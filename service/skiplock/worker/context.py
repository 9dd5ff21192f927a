"""What a handler receives as `ctx`: the job's fields, progress, cancellation, child processes.

`ctx.run(...)` starts each child in its own process group (a new session), with a minimal
environment and resource limits (see children.py). When the attempt ends, whatever its
outcome (done included), every process group it started is killed, so a child left in the
background by a shell dies with its job. From then on the context refuses: `ctx.run` and
`ctx.workdir` raise AttemptEnded (a `def` handler whose attempt timed out keeps running in
its thread, and must not start children or make a workdir that nothing would clean up).
`def` handlers run in a thread and use `ctx.run_sync(...)`, which runs the same code on the
worker's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import threading
import uuid
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skiplock.errors import SkiplockError
from skiplock.handlers import PermanentError
from skiplock.worker.children import ChildLimits, child_environment, signal_name

STDERR_TAIL = 2000  # characters of a failed child's stderr kept in the error message

ProgressSink = Callable[[dict[str, Any]], None]


class ChildProcessFailed(Exception):
    """A child started with ctx.run exited with a non-zero status (the attempt fails)."""

    def __init__(self, command: str, returncode: int, stderr: bytes, hint: str = "") -> None:
        self.command = command
        self.returncode = returncode
        self.stderr = stderr
        self.hint = hint
        tail = stderr.decode("utf-8", "replace").strip()[-STDERR_TAIL:]
        if returncode < 0:
            ended = f"{command} was killed by {signal_name(returncode)}"
        else:
            ended = f"{command} exited with status {returncode}"
        self.summary = ended + (f"; {hint}" if hint else "")  # without the stderr tail
        super().__init__(self.summary + (f": {tail}" if tail else ""))


class ChildLimitExceeded(ChildProcessFailed, PermanentError):
    """A child was stopped by its CPU-time or file-size limit: the same input would hit it
    again, so the job fails at once."""


class AttemptEnded(SkiplockError):
    """ctx.run or ctx.workdir was used after the attempt ended (it timed out, was stopped, or
    finished): nothing started then would ever be cleaned up."""


@dataclass(frozen=True)
class RunResult:
    returncode: int
    stdout: bytes
    stderr: bytes


class _Done:
    """An awaitable that is already finished: `ctx.progress()` works with or without await."""

    def __await__(self) -> Generator[None, None, None]:
        return
        yield  # pragma: no cover  (makes this a generator)


@dataclass
class JobContext:
    job_id: uuid.UUID
    company_id: uuid.UUID
    job_type: str
    attempt: int
    source_task_id: str | None
    cancelled: asyncio.Event
    _report_progress: ProgressSink
    _loop: asyncio.AbstractEventLoop
    _limits: ChildLimits = field(default_factory=ChildLimits)
    _child_env: tuple[str, ...] = ()  # SKIPLOCK_CHILD_ENV: more names children inherit
    _groups: set[int] = field(default_factory=set)  # every process group of this attempt
    _workdir: Path | None = None
    _ended: bool = False
    # workdir and end() may race: a `def` handler's thread against the loop ending its attempt.
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def workdir(self) -> Path:
        """A private temp directory for this attempt, removed afterwards. Made on first use:
        most handlers of small outputs never need one, and it costs two syscalls per job."""
        with self._lock:
            self._refuse_if_ended("ctx.workdir")
            if self._workdir is None:
                self._workdir = Path(tempfile.mkdtemp(prefix=f"skiplock-{self.job_id}-"))
            return self._workdir

    @property
    def limits(self) -> ChildLimits:
        """The limits ctx.run puts on children (pass `limits=` to ctx.run for others)."""
        return self._limits

    def end(self) -> None:
        """The attempt is over: kill every process group it started (a background child
        included, whatever the outcome) and refuse new children and workdirs."""
        with self._lock:
            self._ended = True
        self.kill_children()

    def remove_workdir(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def progress(self, fraction: float, message: str | None = None) -> Awaitable[None]:
        """Report progress (fraction 0..1, optional message). Written at most once a second;
        the latest value wins and a pending one is written with the job's completion.
        Ignored once the attempt has ended."""
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise TypeError(f"progress fraction must be a number, not {fraction!r}")
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress fraction must be between 0 and 1, not {fraction!r}")
        value: dict[str, Any] = {"fraction": float(fraction)}
        if message is not None:
            value["message"] = str(message)
        if not self._ended:
            self._report_progress(value)
        return _Done()

    async def run(
        self,
        *command: str | os.PathLike[str],
        input: bytes | None = None,
        check: bool = True,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        limits: ChildLimits | None = None,
    ) -> RunResult:
        """Run a child process in its own process group, in the job's workdir by default.

        The child gets a minimal environment (PATH, locale, TZ, HOME and TMPDIR = the
        workdir, SKIPLOCK_CHILD_ENV's names) plus `env`, and the worker's resource limits
        unless `limits` gives others. Its output is collected in memory: write large
        results to a file in ctx.workdir. A non-zero exit raises ChildProcessFailed (with
        the stderr tail) when check is true, ChildLimitExceeded when a limit stopped it; a
        program that is not installed raises PermanentError; after the attempt ended,
        AttemptEnded.
        """
        name = os.fspath(command[0])
        self._refuse_if_ended("ctx.run")
        limits = limits or self._limits
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=cwd or self.workdir,
                env=child_environment(self.workdir, self._child_env, env),
                start_new_session=True,  # its own process group, killed as one
                preexec_fn=limits.preexec(),  # setrlimit calls only: safe after fork
            )
        except FileNotFoundError:
            raise PermanentError(
                f"{name} is not installed on this worker (not found on PATH)"
            ) from None
        self._groups.add(process.pid)
        try:
            if self._ended:  # the attempt ended while the child was being started
                raise AttemptEnded(_ended_message("ctx.run"))
            stdout, stderr = await process.communicate(input)
        except BaseException:
            _kill_group(process.pid)
            with contextlib.suppress(ProcessLookupError):
                await asyncio.shield(process.wait())
            raise
        returncode = process.returncode if process.returncode is not None else -1
        if check and returncode != 0:
            hint, certain = limits.explain(returncode, stderr)
            failure = ChildLimitExceeded if certain else ChildProcessFailed
            raise failure(name, returncode, stderr, hint)
        return RunResult(returncode, stdout, stderr)

    def run_sync(self, *command: str | os.PathLike[str], **options: Any) -> RunResult:
        """ctx.run for `def` handlers (which run in a thread): blocks until the child ends."""
        future = asyncio.run_coroutine_threadsafe(self.run(*command, **options), self._loop)
        return future.result()

    def kill_children(self) -> None:
        """Kill every process group this attempt started (timeout, cancellation, shutdown,
        and the attempt's end). A group whose processes are all gone is skipped by the
        kernel (ESRCH); its id cannot have been reused while any of them lived."""
        for pid in list(self._groups):
            _kill_group(pid)

    def _refuse_if_ended(self, what: str) -> None:
        if self._ended:
            raise AttemptEnded(_ended_message(what))


def _ended_message(what: str) -> str:
    return (
        f"{what} was used after this attempt ended (timed out, stopped or finished); "
        "a handler cannot start children or make a workdir once its attempt is over"
    )


def _kill_group(pid: int) -> None:
    # The child leads its own session, so its pid is its process group id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
