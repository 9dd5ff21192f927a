"""What a handler receives as `ctx`: the job's fields, progress, cancellation, child processes.

`ctx.run(...)` starts each child in its own process group (a new session), so that a
timeout, a cancellation or a shutdown kills the child and everything it started, with
one `killpg`, before the job is handed back. `def` handlers run in a thread and use
`ctx.run_sync(...)`, which runs the same code on the worker's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skiplock.handlers import PermanentError

STDERR_TAIL = 2000  # characters of a failed child's stderr kept in the error message

ProgressSink = Callable[[dict[str, Any]], None]


class ChildProcessFailed(Exception):
    """A child started with ctx.run exited with a non-zero status (the attempt fails)."""

    def __init__(self, command: str, returncode: int, stderr: bytes) -> None:
        self.command = command
        self.returncode = returncode
        self.stderr = stderr
        tail = stderr.decode("utf-8", "replace").strip()[-STDERR_TAIL:]
        detail = f": {tail}" if tail else ""
        super().__init__(f"{command} exited with status {returncode}{detail}")


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
    _children: set[int] = field(default_factory=set)
    _workdir: Path | None = None

    @property
    def workdir(self) -> Path:
        """A private temp directory for this attempt, removed afterwards. Made on first use:
        most handlers of small outputs never need one, and it costs two syscalls per job."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix=f"skiplock-{self.job_id}-"))
        return self._workdir

    def remove_workdir(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def progress(self, fraction: float, message: str | None = None) -> Awaitable[None]:
        """Report progress (fraction 0..1, optional message). Written at most once a second;
        the latest value wins and a pending one is written with the job's completion."""
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise TypeError(f"progress fraction must be a number, not {fraction!r}")
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress fraction must be between 0 and 1, not {fraction!r}")
        value: dict[str, Any] = {"fraction": float(fraction)}
        if message is not None:
            value["message"] = str(message)
        self._report_progress(value)
        return _Done()

    async def run(
        self,
        *command: str | os.PathLike[str],
        input: bytes | None = None,
        check: bool = True,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> RunResult:
        """Run a child process in its own process group, in the job's workdir by default.

        Its output is collected in memory: write large results to a file in ctx.workdir.
        A non-zero exit raises ChildProcessFailed (with the stderr tail) when check is true;
        a program that is not installed raises PermanentError.
        """
        name = os.fspath(command[0])
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=cwd or self.workdir,
                env=dict(env) if env is not None else None,
                start_new_session=True,  # its own process group, killed as one
            )
        except FileNotFoundError:
            raise PermanentError(
                f"{name} is not installed on this worker (not found on PATH)"
            ) from None
        self._children.add(process.pid)
        try:
            stdout, stderr = await process.communicate(input)
        except BaseException:
            _kill_group(process.pid)
            with contextlib.suppress(ProcessLookupError):
                await asyncio.shield(process.wait())
            raise
        finally:
            self._children.discard(process.pid)
        returncode = process.returncode if process.returncode is not None else -1
        if check and returncode != 0:
            raise ChildProcessFailed(name, returncode, stderr)
        return RunResult(returncode, stdout, stderr)

    def run_sync(self, *command: str | os.PathLike[str], **options: Any) -> RunResult:
        """ctx.run for `def` handlers (which run in a thread): blocks until the child ends."""
        future = asyncio.run_coroutine_threadsafe(self.run(*command, **options), self._loop)
        return future.result()

    def kill_children(self) -> None:
        """Kill every child's process group now (timeout, cancellation, shutdown)."""
        for pid in list(self._children):
            _kill_group(pid)


def _kill_group(pid: int) -> None:
    # The child leads its own session, so its pid is its process group id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
