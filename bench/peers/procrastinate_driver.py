"""procrastinate's driver for the side-by-side benchmark (interface: bench/peers/README.md).

    bench/.venv/bin/python bench/peers/procrastinate_driver.py --database-url URL \
        --workload drain|wakeup|enqueue [--jobs 20000] [--processes 1] [--profile default]

The schema goes in with procrastinate's own `apply_schema_async()`, jobs with
`defer_async` / `batch_defer_async` through a `PsycopgConnector`, and the workers are real
`procrastinate worker` processes (app and no-op task: procrastinate_app.py).

- default profile: the documented worker defaults (concurrency 1, psycopg_pool's default
  pool of 4 connections, 5 s fetch polling interval, LISTEN/NOTIFY on).
- raised profile: `--concurrency 30` (the value procrastinate's concurrency how-to shows),
  with the pool sized to concurrency + 1 as its "Mind the size of your PostgreSQL pool"
  section asks for short jobs.

Workers run with `--log-level warning` (the CLI's default, info, writes two lines per job),
like skiplock's workers in this benchmark. Progress goes to stderr, one JSON object to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from driver import CpuMeter, interface_parser, logger, proc_status_mib  # noqa: E402
from procrastinate_app import HOLD_QUEUE, QUEUE, app, connector, noop  # noqa: E402

PROFILES = {"default": 1, "raised": 30}  # worker --concurrency
BATCH = 1000
WAKEUP_WARMUP = 10
WAKEUP_JOBS = 200
WAKEUP_GAP_S = 0.02
SETTLE_S = 0.5  # after the workers are ready: their first (empty) fetch is done
POLL_S = 0.05  # how often the drain checks for unfinished jobs
BOOT_TIMEOUT_S = 60.0
UNFINISHED = "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
EVENTS_SPAN = (
    "SELECT min(at) FILTER (WHERE type = 'started'), max(at) FILTER (WHERE type = 'succeeded')"
    " FROM procrastinate_events"
)


log = logger("procrastinate")


_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not in the forked child


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the driver dies, even by SIGKILL."""
    _prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Workers:
    """`procrastinate worker` processes; the no-op handler stamps its start per process."""

    def __init__(self, url: str, count: int, concurrency: int) -> None:
        self.url = url
        self._tmp = tempfile.TemporaryDirectory(prefix="procrastinate-bench-")
        tmp = Path(self._tmp.name)
        self.stamp_dir = tmp / "stamps"
        self.stamp_dir.mkdir()
        env = {
            **os.environ,
            "PYTHONPATH": str(HERE),
            "BENCH_DATABASE_URL": url,
            "BENCH_STAMP_DIR": str(self.stamp_dir),
        }
        if concurrency > 1:
            env["BENCH_POOL_SIZE"] = str(concurrency + 1)
        command = [
            sys.executable,
            "-m",
            "procrastinate",
            "--app",
            "procrastinate_app.app",
            "--log-level",
            "warning",
            "worker",
            "--queues",
            QUEUE,
            "--concurrency",
            str(concurrency),
        ]
        self.logs = [tmp / f"worker{i}.log" for i in range(count)]
        self.procs: list[subprocess.Popen[bytes]] = []
        atexit.register(self.stop)
        self.spawned = time.monotonic()
        for path in self.logs:
            with path.open("wb") as err:
                self.procs.append(
                    subprocess.Popen(  # noqa: S603  (our own fixed command line)
                        command,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=err,
                        stderr=err,
                        preexec_fn=_die_with_parent,  # before any thread exists
                    )
                )

    async def wait_ready(self) -> float:
        """Seconds from spawning until every worker is registered and LISTENing."""
        query = (
            "SELECT (SELECT count(*) FROM procrastinate_workers),"
            " (SELECT count(*) FROM pg_stat_activity"
            "  WHERE datname = current_database() AND query LIKE 'LISTEN %')"
        )
        want = len(self.procs)
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            while True:
                registered, listening = await one(conn, query)
                if registered >= want and listening >= want:
                    return time.monotonic() - self.spawned
                self.check_alive()
                if time.monotonic() - self.spawned > BOOT_TIMEOUT_S:
                    raise RuntimeError(f"workers not ready after {BOOT_TIMEOUT_S} s")
                await asyncio.sleep(0.01)

    def check_alive(self) -> None:
        for proc, path in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                tail = path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"worker {proc.pid} exited ({proc.returncode}):\n{tail}")

    def rss_mib(self, field: str) -> list[float]:
        """VmRSS (now) or VmHWM (peak) of each worker process, MiB."""
        return [proc_status_mib(proc.pid, field) for proc in self.procs]

    def stamps(self) -> list[tuple[str, float]]:
        """(i, handler start time.time()) of every job run so far, all processes."""
        found = []
        for path in self.stamp_dir.iterdir():
            for line in path.read_text().splitlines():
                i, started = line.split()
                found.append((i, float(started)))
        return found

    def stop(self) -> None:
        """SIGTERM (procrastinate's graceful stop), then SIGKILL whatever lingers."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 15
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._tmp.cleanup()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def one(conn: psycopg.AsyncConnection[Any], query: str, *params: object) -> Any:
    row = await (await conn.execute(query, params or None)).fetchone()
    if row is None:
        raise RuntimeError(f"no row from {query}")
    return row if len(row) > 1 else row[0]


async def park(jobs: int) -> None:
    """Defer the jobs, 1,000 per call, to a queue the workers don't listen to: no NOTIFY
    reaches them and their fetches don't see the jobs."""
    held = noop.configure(queue=HOLD_QUEUE)
    async with app.open_async():
        for start in range(0, jobs, BATCH):
            await held.batch_defer_async(*({} for _ in range(min(BATCH, jobs - start))))


async def release(conn: psycopg.AsyncConnection[Any]) -> int:
    """In one transaction, move the parked jobs to the workers' queue and ring the doorbell
    they listen on, with the payload procrastinate's own insert trigger sends."""
    async with conn.transaction():
        moved = (
            await conn.execute(
                "UPDATE procrastinate_jobs SET queue_name = %s WHERE queue_name = %s",
                (QUEUE, HOLD_QUEUE),
            )
        ).rowcount
        payload = json.dumps({"type": "job_inserted", "job_id": 0})
        await conn.execute("SELECT pg_notify(%s, %s)", (f"procrastinate_queue_v1#{QUEUE}", payload))
    return moved


async def drain(
    url: str, jobs: int, processes: int, concurrency: int
) -> tuple[dict[str, Any], str]:
    with Workers(url, processes, concurrency) as workers:
        boot = await workers.wait_ready()
        await asyncio.sleep(SETTLE_S)
        idle = workers.rss_mib("VmRSS")
        log(f"{processes} worker(s) ready in {boot:.2f} s; deferring {jobs} jobs")
        await park(jobs)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("ANALYZE")
            await conn.execute("CHECKPOINT")
            workers.check_alive()
            log("releasing")
            meter = CpuMeter(conn.info.backend_pid, (proc.pid for proc in workers.procs))
            if (moved := await release(conn)) != jobs:
                raise RuntimeError(f"released {moved} jobs, expected {jobs}")
            meter.start()
            while await one(conn, UNFINISHED):
                workers.check_alive()
                await asyncio.sleep(POLL_S)
            finished = time.time()
            meter.stop()
            statuses = await one(
                conn,
                "SELECT json_object_agg(status, n) FROM "
                "(SELECT status, count(*) AS n FROM procrastinate_jobs GROUP BY 1) s",
            )
            first_db, last_db = await one(conn, EVENTS_SPAN)
        peak = workers.rss_mib("VmHWM")
        starts = [started for _, started in workers.stamps()]
    if statuses != {"succeeded": jobs} or len(starts) != jobs:
        raise RuntimeError(f"drain incomplete: statuses {statuses}, {len(starts)} handler runs")
    seconds = finished - min(starts)
    db_seconds = (last_db - first_db).total_seconds()
    log(f"drained {jobs} jobs in {seconds:.2f} s ({jobs / seconds:,.0f} jobs/s)")
    figures = {
        "processes": processes,
        "concurrency": concurrency,
        "jobs": jobs,
        "jobs_per_s": round(jobs / seconds, 1),
        "boot_s": round(boot, 3),
        "rss_idle_mib": idle,
        "rss_peak_mib": peak,
        **meter.per_job_us(jobs),
    }
    detail = (
        f"jobs batch_defer_async'ed ({BATCH} per call) to queue {HOLD_QUEUE!r}, which the "
        f"idle workers (--queues {QUEUE}) neither fetch from nor get NOTIFYs for; ANALYZE; "
        "CHECKPOINT; then released in one transaction: UPDATE queue_name to the workers' "
        "queue + one pg_notify on their channel with the payload procrastinate's insert "
        "trigger sends (an UPDATE fires no NOTIFY: each worker would otherwise notice only "
        "at its next 5 s poll, at different moments); boot = spawn -> every worker in "
        "procrastinate_workers and its LISTEN issued; "
        f"drain {seconds:.2f} s = first handler start (time.time()) -> first poll "
        f"(every {POLL_S * 1000:.0f} ms) seeing no todo/doing job; by procrastinate's own "
        f"event log (first 'started' -> last 'succeeded' procrastinate_events.at) "
        f"{db_seconds:.2f} s = {jobs / db_seconds:,.1f} jobs/s"
    )
    return figures, detail


async def wakeup(url: str, concurrency: int) -> tuple[dict[str, Any], str]:
    total = WAKEUP_WARMUP + WAKEUP_JOBS
    committed: dict[str, float] = {}
    with Workers(url, 1, concurrency) as workers:
        boot = await workers.wait_ready()
        await asyncio.sleep(SETTLE_S)
        log(f"worker ready in {boot:.2f} s; {total} jobs {WAKEUP_GAP_S * 1000:.0f} ms apart")
        async with app.open_async():
            for i in range(total):
                await noop.defer_async(i=i)  # returns once the INSERT has committed
                committed[str(i)] = time.time()
                await asyncio.sleep(WAKEUP_GAP_S)
        deadline = time.monotonic() + 30
        while len(started := dict(workers.stamps())) < total:
            workers.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(started)} of {total} jobs ran")
            await asyncio.sleep(0.05)
    latencies = [
        round((started[str(i)] - committed[str(i)]) * 1000, 3) for i in range(WAKEUP_WARMUP, total)
    ]
    ordered = sorted(latencies)
    log(f"wake-up p50 {ordered[len(ordered) // 2]:.2f} ms, max {ordered[-1]:.2f} ms")
    detail = (
        f"{WAKEUP_WARMUP} warm-up jobs then {WAKEUP_JOBS}, task.defer_async() one at a time "
        f"{WAKEUP_GAP_S * 1000:.0f} ms apart; latency = handler time.time() - time.time() "
        "right after defer_async returned (committed); values in deferral order; the worker "
        "wakes on procrastinate's LISTEN/NOTIFY (insert trigger), its 5 s poll is the fallback"
    )
    return {"processes": 1, "concurrency": concurrency, "latencies_ms": latencies}, detail


async def enqueue(jobs: int) -> tuple[dict[str, Any], str]:
    batches = jobs // BATCH
    async with app.open_async():
        started = time.perf_counter()
        for _ in range(jobs):
            await noop.defer_async()
        one_per_s = jobs / (time.perf_counter() - started)
        log(f"defer_async one at a time: {one_per_s:,.0f} jobs/s")
        started = time.perf_counter()
        for _ in range(batches):
            await noop.batch_defer_async(*({} for _ in range(BATCH)))
        batch_per_s = batches * BATCH / (time.perf_counter() - started)
        log(f"batch_defer_async by {BATCH}: {batch_per_s:,.0f} jobs/s")
    figures = {
        "jobs": jobs,
        "enqueue_one_per_s": round(one_per_s, 1),
        "enqueue_batch_per_s": round(batch_per_s, 1),
    }
    detail = (
        f"{jobs} x task.defer_async() one at a time (a transaction each), then {batches} x "
        f"task.batch_defer_async() of {BATCH} kwargs each, through the PsycopgConnector's "
        "default pool; no worker running"
    )
    return figures, detail


def settings(profile: str, concurrency: int) -> str:
    if profile == "default":
        workers = (
            "documented worker defaults: concurrency 1, psycopg_pool's default pool (4 connections)"
        )
    else:
        workers = (
            f"worker --concurrency {concurrency} (the value procrastinate's concurrency "
            f"how-to shows), pool min=max={concurrency + 1} (its docs: concurrency + 1 for "
            "short jobs)"
        )
    return (
        f"{workers}; fetch_job_polling_interval 5 s, LISTEN/NOTIFY on, delete_jobs never "
        "(defaults); `procrastinate worker --queues bench --log-level warning` processes "
        "(the CLI's default, info, logs 2 lines per job); no-op async task; PsycopgConnector; "
        "schema by app.schema_manager.apply_schema_async()"
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    concurrency = PROFILES[args.profile]
    with app.replace_connector(connector(args.database_url)):
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
        log(f"schema applied; workload {args.workload}, profile {args.profile}")
        if args.workload == "drain":
            figures, detail = await drain(args.database_url, args.jobs, args.processes, concurrency)
        elif args.workload == "wakeup":
            figures, detail = await wakeup(args.database_url, concurrency)
        else:
            figures, detail = await enqueue(args.jobs)
    return {
        "library": "procrastinate",
        "version": version("procrastinate"),
        "workload": args.workload,
        "profile": args.profile,
        **figures,
        "notes": f"{settings(args.profile, concurrency)}; {detail}",
    }


def main() -> None:
    parser = interface_parser(__doc__.splitlines()[0], PROFILES)
    args = parser.parse_args()
    # SIGTERM/SIGINT unwind normally, so the workers are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
