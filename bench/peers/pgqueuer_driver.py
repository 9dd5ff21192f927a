"""PgQueuer peer driver for the side-by-side benchmark (see bench/peers/README.md).

    bench/.venv/bin/python bench/peers/pgqueuer_driver.py --database-url URL \
        --workload drain|wakeup|enqueue [--jobs 20000] [--processes 1] [--profile default|raised]

The database must be fresh and empty: the schema goes in with PgQueuer's own installer
(`pgq install`, durability `durable`, its default) followed by `pgq autovac`, which its
performance-tuning checklist says to run after installing. Jobs are enqueued with
`Queries.enqueue` on one asyncpg connection (autocommit). Workers are real processes, each
running `pgqueuer.run(factory)` (what `pgq run` runs, minus the CLI, which is broken in this
venv: see pgqueuer_worker.py) on uvloop: PgQueuer = QueueManager + SchedulerManager, one
asyncpg connection, log level warning.

- drain: workers start and go idle; N jobs are enqueued in one call, deferred with
  `execute_after` to a moment after `ANALYZE; CHECKPOINT` has finished. PgQueuer's own
  deferred-job timer then releases them in every worker at once. (Its NOTIFY trigger is
  FOR EACH STATEMENT and only notifies an UPDATE if OLD IS DISTINCT FROM NEW, both NULL at
  statement level: an UPDATE releasing parked jobs would wake no idle worker.)
  jobs/s = N / (first handler start -> first poll, every 10 ms, that finds the queue table
  empty: PgQueuer deletes a job when its completion is written).
- wakeup: one idle worker; 10 warm-up jobs, then 200 enqueued one at a time 20 ms apart;
  latency = handler start (time.time()) - time.time() once `Queries.enqueue` returned.
  A value can be slightly negative: the worker may start the job before this process,
  sharing the CPUs, gets to run again after its commit.
- enqueue: N one at a time, then N in batches of 1,000 (list arguments), no worker running.

Prints one JSON object on stdout; progress goes to stderr. Worker processes are stopped on
every exit path: context managers, SIGTERM/SIGHUP turned into SystemExit, and a parent-death
signal set in each child in case this process is killed outright.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import asyncpg
from pgqueuer.db import AsyncpgDriver
from pgqueuer.queries import Queries
from psycopg.conninfo import conninfo_to_dict

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from driver import CpuMeter, interface_parser, logger, proc_status_mib  # noqa: E402
from pgqueuer_worker import ENTRYPOINT  # noqa: E402

QUEUE_TABLE = "pgqueuer"  # PgQueuer's default name (no prefix, no schema configured)
LOG_TABLE = "pgqueuer_log"
PROFILES = {
    # PgQueuer's defaults (QueueManager.run, `pgq run`): batch_size 10, max_concurrent_tasks
    # unset, i.e. no cap on a process's running jobs.
    "default": {"batch_size": 10},
    # The tuning guide's throughput knob for short jobs is batch_size; concurrency is
    # already uncapped, and max_concurrent_tasks could only lower it.
    "raised": {"batch_size": 100},
}
ENQUEUE_BATCH = 1_000
WAKEUP_WARMUP = 10
WAKEUP_COUNT = 200
WAKEUP_GAP_S = 0.02
POLL_S = 0.01
PR_SET_PDEATHSIG = 1


log = logger("pgqueuer")


def asyncpg_dsn(url: str) -> str:
    """asyncpg takes only URIs; a libpq key=value string becomes one with query parameters."""
    if url.startswith(("postgresql://", "postgres://")):
        return url
    return "postgresql://?" + urlencode(conninfo_to_dict(url))


def pgq(dsn: str, *args: str) -> None:
    """Run a `pgq` CLI command against the database; its output goes to stderr."""
    command = [sys.executable, "-m", "pgqueuer", "--pg-dsn", dsn, *args]
    subprocess.run(command, check=True, stdout=sys.stderr)  # noqa: S603  (fixed arguments)


def install_schema(dsn: str) -> None:
    pgq(dsn, "install")
    pgq(dsn, "autovac")


def die_with_parent() -> None:
    """preexec_fn: the kernel sends the worker SIGTERM when the driver dies, however."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Workers:
    """pgqueuer_worker.py processes, each with its own handler-start and ready files.

    Started on entering the `with` block, stopped (SIGTERM: PgQueuer's graceful shutdown,
    then SIGKILL after 15 s) and their files removed on leaving it, however it is left.
    """

    def __init__(self, dsn: str, count: int, batch_size: int) -> None:
        self.dsn = dsn
        self.count = count
        self.batch_size = batch_size
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started = 0.0
        self._tmp = tempfile.TemporaryDirectory(prefix="pgqueuer-bench-")
        self.tmp = Path(self._tmp.name)

    def __enter__(self) -> Workers:
        self.started = time.time()
        try:
            for i in range(self.count):
                command = [
                    sys.executable, str(HERE / "pgqueuer_worker.py"),
                    self.dsn, str(self.starts_file(i)), str(self.ready_file(i)),
                    "--batch-size", str(self.batch_size),
                ]  # fmt: skip
                self.procs.append(
                    subprocess.Popen(  # noqa: S603  (our worker, fixed arguments)
                        command, stdout=sys.stderr, preexec_fn=die_with_parent
                    )
                )
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.stop()
        finally:
            self._tmp.cleanup()

    def starts_file(self, i: int) -> Path:
        return self.tmp / f"starts-{i}.txt"

    def ready_file(self, i: int) -> Path:
        return self.tmp / f"ready-{i}.txt"

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"worker {proc.pid} exited with {proc.returncode}")

    async def wait_ready(self, timeout: float = 60) -> float:
        """Seconds from spawning the processes until the last one's LISTEN answered."""
        deadline = time.monotonic() + timeout
        while not all(self.ready_file(i).exists() for i in range(self.count)):
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError("workers not ready")
            await asyncio.sleep(POLL_S)
        ready = [float(self.ready_file(i).read_text()) for i in range(self.count)]
        return max(ready) - self.started

    def rss_mib(self, field: str = "VmRSS") -> list[float]:
        return [proc_status_mib(proc.pid, field) for proc in self.procs]

    def handler_starts(self) -> list[list[tuple[int, float]]]:
        """Per process, (job id, handler start) for every handler it has run so far."""
        per_process = []
        for i in range(self.count):
            path = self.starts_file(i)
            lines = path.read_text().splitlines() if path.exists() else []
            per_process.append(
                [(int(job), float(started)) for job, started in map(str.split, lines)]
            )
        return per_process

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@asynccontextmanager
async def connect(dsn: str) -> AsyncIterator[tuple[asyncpg.Connection, Queries]]:
    """The driver's own connection, and PgQueuer's Queries on it (autocommit)."""
    conn = await asyncpg.connect(dsn)
    try:
        yield conn, Queries(AsyncpgDriver(conn))
    finally:
        await conn.close()


async def enqueue_parked(conn: asyncpg.Connection, queries: Queries, jobs: int) -> float:
    """Enqueue the jobs deferred past ANALYZE and CHECKPOINT, run those; the release time."""
    # Ample time for the insert, ANALYZE and CHECKPOINT on a busy 2-core box.
    delay = timedelta(seconds=3 + jobs / 4_000)
    await queries.enqueue([ENTRYPOINT] * jobs, [None] * jobs, [0] * jobs, [delay] * jobs)
    query = f"SELECT min(execute_after) FROM {QUEUE_TABLE}"  # noqa: S608  (a constant)
    release_at: float = (await conn.fetchval(query)).timestamp()
    await conn.execute("ANALYZE")
    await conn.execute("CHECKPOINT")
    if release_at - time.time() < 0.2:
        raise RuntimeError("the jobs were released before CHECKPOINT had finished")
    return release_at


async def wait_until_empty(conn: asyncpg.Connection, workers: Workers, timeout: float) -> float:
    """time.time() of the first poll that finds no job left in the queue table."""
    deadline = time.monotonic() + timeout
    query = f"SELECT EXISTS (SELECT FROM {QUEUE_TABLE})"  # noqa: S608  (a constant)
    while await conn.fetchval(query):
        workers.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError("queue not drained")
        await asyncio.sleep(POLL_S)
    return time.time()


async def drain(dsn: str, jobs: int, processes: int, batch_size: int) -> dict[str, Any]:
    async with connect(dsn) as (conn, queries):
        with Workers(dsn, processes, batch_size) as workers:
            boot = await workers.wait_ready()
            await asyncio.sleep(0.5)  # let start-up settle before reading RSS
            idle = workers.rss_mib("VmRSS")
            log(f"{processes} worker(s) ready in {boot:.2f} s, RSS {idle} MiB")

            release_at = await enqueue_parked(conn, queries, jobs)
            log(f"{jobs} jobs parked, ANALYZE + CHECKPOINT done; release at {release_at:.3f}")
            await asyncio.sleep(release_at - time.time() - 0.1)
            backend = await conn.fetchval("SELECT pg_backend_pid()")
            meter = CpuMeter(backend, (proc.pid for proc in workers.procs))
            meter.start()
            finished = await wait_until_empty(conn, workers, timeout=max(300, jobs / 50))
            meter.stop()
            peak = workers.rss_mib("VmHWM")
            query = f"SELECT max(created) FROM {LOG_TABLE} WHERE status = 'successful'"  # noqa: S608
            last_logged = (await conn.fetchval(query)).timestamp()
            workers.stop()
            starts = workers.handler_starts()

    runs = [run for process in starts for run in process]
    if len({job_id for job_id, _ in runs}) != jobs:
        raise RuntimeError(f"{len({job_id for job_id, _ in runs})} of {jobs} jobs ran")
    first = min(started for _, started in runs)
    seconds = finished - first
    log(
        f"drained in {seconds:.3f} s; jobs per process {[len(p) for p in starts]}; first "
        f"handler {[round(min(t for _, t in p) - release_at, 3) for p in starts if p]} s after "
        f"the release; last completion logged {finished - last_logged:.3f} s before the empty "
        f"poll; {len(runs) - jobs} handler runs beyond one per job"
    )
    return {
        "jobs": jobs,
        "jobs_per_s": round(jobs / seconds, 1),
        "boot_s": round(boot, 3),
        "rss_idle_mib": idle,
        "rss_peak_mib": peak,
        **meter.per_job_us(jobs),
    }


async def wakeup(dsn: str, batch_size: int) -> dict[str, Any]:
    committed: dict[int, float] = {}
    async with connect(dsn) as (_, queries):
        with Workers(dsn, 1, batch_size) as workers:
            await workers.wait_ready()
            await asyncio.sleep(0.5)
            for i in range(WAKEUP_WARMUP + WAKEUP_COUNT):
                (job_id,) = await queries.enqueue(ENTRYPOINT, None)
                if i >= WAKEUP_WARMUP:
                    committed[job_id] = time.time()
                await asyncio.sleep(WAKEUP_GAP_S)
            deadline = time.monotonic() + 10
            while len(workers.handler_starts()[0]) < WAKEUP_WARMUP + WAKEUP_COUNT:
                workers.check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError("not every wake-up job ran")
                await asyncio.sleep(0.05)
            workers.stop()
            started = dict(workers.handler_starts()[0])
    return {
        "jobs": WAKEUP_COUNT,
        "latencies_ms": [round((started[j] - t) * 1000, 3) for j, t in committed.items()],
    }


async def enqueue(dsn: str, jobs: int) -> dict[str, Any]:
    async with connect(dsn) as (_, queries):
        began = time.perf_counter()
        for _ in range(jobs):
            await queries.enqueue(ENTRYPOINT, None)
        one = jobs / (time.perf_counter() - began)
        log(f"{jobs} enqueued one at a time: {one:,.0f}/s")

        began = time.perf_counter()
        for done in range(0, jobs, ENQUEUE_BATCH):
            n = min(ENQUEUE_BATCH, jobs - done)
            await queries.enqueue([ENTRYPOINT] * n, [None] * n, [0] * n)
        batch = jobs / (time.perf_counter() - began)
        log(f"{jobs} enqueued in batches of {ENQUEUE_BATCH}: {batch:,.0f}/s")
    return {
        "jobs": jobs,
        "enqueue_one_per_s": round(one, 1),
        "enqueue_batch_per_s": round(batch, 1),
    }


def notes(workload: str, profile: str, batch_size: int) -> str:
    common = (
        "schema: `pgq install` (durability durable, the default) + `pgq autovac` (recommended "
        "in PgQueuer's tuning checklist); asyncpg, one connection per process; jobs: "
        "Queries.enqueue, payload None, priority 0."
    )
    if workload == "enqueue":
        return (
            f"{common} N one at a time (one autocommit statement each: INSERT + log row, "
            "statement trigger NOTIFY), then N in list calls of 1,000 (one statement each); "
            "no worker running, the second phase starts on a table holding the first N."
        )
    workers = (
        f"{common} workers: pgqueuer.run(factory) on uvloop (what `pgq run` runs; the CLI "
        "itself fails to start with typer 0.29), PgQueuer (QueueManager + idle "
        "SchedulerManager), log level warning, no-op async entrypoint "
        f"appending time.time() to a file; profile {profile}: batch_size {batch_size}, "
        "max_concurrent_tasks unset = no cap on running jobs per process (concurrency null), "
        "other settings PgQueuer's defaults (dequeue_timeout 30 s, heartbeat_timeout 30 s)"
        + ("; raised changes only batch_size 10 -> 100" if profile == "raised" else "")
        + ". "
    )
    if workload == "drain":
        return workers + (
            "Jobs enqueued in one call with execute_after set so PgQueuer's deferred-job timer "
            "releases them after ANALYZE; CHECKPOINT (its statement-level trigger never "
            "NOTIFYs on UPDATE, so an UPDATE could not release parked jobs); jobs_per_s = N / "
            "(first handler start -> first 10 ms poll finding the queue table empty; "
            "completions are buffered, flushed per batch_size or 0.1 s, and delete the job)."
        )
    return workers + (
        "Latency = handler start - time.time() after Queries.enqueue returned (its commit), "
        "in enqueue order; can dip below 0 when the worker wins the race for a CPU."
    )


def parse_args() -> argparse.Namespace:
    parser = interface_parser(__doc__.splitlines()[0], PROFILES)
    return parser.parse_args()


def exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through every `with Workers(...)`


def main() -> None:
    signal.signal(signal.SIGTERM, exit_on_signal)
    signal.signal(signal.SIGHUP, exit_on_signal)
    args = parse_args()
    dsn = asyncpg_dsn(args.database_url)
    batch_size = PROFILES[args.profile]["batch_size"]
    install_schema(dsn)

    began = time.monotonic()
    if args.workload == "drain":
        result = asyncio.run(drain(dsn, args.jobs, args.processes, batch_size))
    elif args.workload == "wakeup":
        result = asyncio.run(wakeup(dsn, batch_size))
    else:
        result = asyncio.run(enqueue(dsn, args.jobs))
    log(f"{args.workload} took {time.monotonic() - began:.1f} s")

    output: dict[str, Any] = {
        "library": "pgqueuer",
        "version": version("pgqueuer"),
        "workload": args.workload,
        "profile": args.profile,
    }
    if args.workload != "enqueue":
        output["processes"] = args.processes if args.workload == "drain" else 1
        output["concurrency"] = None  # max_concurrent_tasks unset: no per-process cap
    output.update(result)
    output["notes"] = notes(args.workload, args.profile, batch_size)
    print(json.dumps(output))


if __name__ == "__main__":
    main()
