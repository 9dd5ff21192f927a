"""Workers for tests: in-process (an asyncio task) or real `skiplock worker` processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

import job_handlers  # noqa: F401  (registers the test job types)
from cli_helpers import REPO
from skiplock import handlers
from skiplock.settings import Settings
from skiplock.worker import Worker, WorkerOptions

TESTS = Path(__file__).resolve().parent
handlers.load_handler_modules([], include_entry_points=False)  # the built-in types


def enqueue(
    conn: psycopg.Connection[Any],
    company_id: uuid.UUID,
    job_type: str,
    input_: dict[str, Any] | None = None,
    **columns: Any,
) -> uuid.UUID:
    names = ["company_id", "job_type", "input", *columns]
    values = [company_id, job_type, psycopg.types.json.Jsonb(input_ or {}), *columns.values()]
    row = conn.execute(
        f"INSERT INTO skiplock.content_jobs ({', '.join(names)}) "
        f"VALUES ({', '.join(['%s'] * len(values))}) RETURNING id",
        values,
    ).fetchone()
    assert row is not None
    job_id: uuid.UUID = row[0]
    return job_id


def job(conn: psycopg.Connection[Any], job_id: uuid.UUID) -> dict[str, Any]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute("SELECT * FROM skiplock.content_jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return row


def events(conn: psycopg.Connection[Any], job_id: uuid.UUID) -> list[tuple[str, dict[str, Any]]]:
    rows = conn.execute(
        "SELECT type, payload FROM skiplock.content_job_events WHERE job_id = %s ORDER BY xid, id",
        (job_id,),
    ).fetchall()
    return [(t, p) for t, p in rows]


def wait_for(check: Callable[[], Any], timeout: float = 20, every: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {check}")
        time.sleep(every)


async def await_for(check: Callable[[], Any], timeout: float = 20, every: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {check}")
        await asyncio.sleep(every)


def status_is(
    conn: psycopg.Connection[Any], job_id: uuid.UUID, *statuses: str
) -> Callable[[], bool]:
    return lambda: job(conn, job_id)["status"] in statuses


@contextlib.asynccontextmanager
async def running_worker(
    database_url: str, storage_dir: Path, **options: Any
) -> AsyncIterator[Worker]:
    """A worker in this process; stopped (gracefully) when the block ends."""
    settings = Settings(
        database_url=database_url,
        storage_dir=storage_dir,
        lease_seconds=options.pop("lease_seconds", 30),
        generated_asset_max_bytes=options.pop("max_bytes", 524_288_000),
        webhook_allow_private=options.pop("webhook_allow_private", True),
    )
    worker = Worker(settings, WorkerOptions(**options))
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.started.wait(), 10)
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        return self.process.wait(timeout)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait(10)


def start_worker_process(
    database_url: str,
    tmp_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
) -> WorkerProcess:
    """`python -m skiplock worker --handlers job_handlers ARGS`, ready once registered."""
    log_path = tmp_path / f"worker-{uuid.uuid4().hex[:6]}.log"
    full_env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SKIPLOCK_STORAGE_DIR": str(tmp_path / "storage"),
        "SKIPLOCK_TEST_RUNS": str(tmp_path / "runs.txt"),
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        **(env or {}),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "skiplock", "worker", "--handlers", "job_handlers", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=REPO,
        )
    worker = WorkerProcess(process, log_path)
    if wait_ready:
        try:
            wait_for(lambda: "worker started" in worker.log() or process.poll() is not None, 30)
        except AssertionError:
            worker.kill()
            raise
        if process.poll() is not None:
            raise AssertionError(f"worker exited at start: {worker.log()}")
    return worker


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) is gone for our purposes.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return False
    return True
