"""chancy (https://github.com/TkTech/chancy) peer driver; see README.md beside this file.

    bench/.venv/bin/python bench/peers/chancy_driver.py --database-url URL \
        --workload drain|wakeup|enqueue [--jobs 20000] [--processes 1] [--profile default|raised]

Everything goes through chancy's documented API: `Chancy.migrate()` creates its schema (core
and default plugins) in the given empty database, `Chancy.declare(Queue(...))` the queues, with
the AsyncExecutor (the executor the docs give for async jobs); `Chancy.push` enqueues one job,
`Chancy.push_many(..., batch_size=1000)` a batch. Workers are separate processes, each this
file run with `--worker-child`: `async with Chancy(url) as app, Worker(app)`, as the docs
start one; the job is `chancy_jobs.record`, a no-op that only notes its start time.

Chancy's defaults are kept (default plugins: leadership, pruner, recovery, metrics,
workflows; LISTEN/NOTIFY on, which the docs give as the way workers learn of a push "nearly
instantly", with polling as the fallback), except the log level: chancy logs an INFO line
per job fetched, so its logger is passed in (the documented `log=` argument) at WARNING, as
the skiplock workers are run at warning in bench/worker. (Left alone, chancy would log through
rich, which bench/.venv has only because typer, a pgqueuer dependency, brings it.)

Profiles (queue settings, the same for every queue the driver declares):
- default: `Queue(name, executor=Async)`: concurrency None, which the AsyncExecutor turns
  into 100 jobs per worker; polling_interval 5 s; eager_polling off.
- raised: concurrency RAISED_CONCURRENCY, polling_interval 1 s (the column is an integer,
  1 is the least), and eager_polling on, which the docs describe as polling again as soon as
  an executor slot frees up, cutting the wait between jobs at the cost of database load.

Drain: the N jobs are pushed with push_many into a queue that is not declared yet, so no
worker serves it; ANALYZE; CHECKPOINT; then the release is `declare()` of that queue, whose
NOTIFY ("queue.declared") makes every idle worker pick the queue up and poll it at once (no
UPDATE of the job rows is needed). jobs/s = N / (the moment a 50 ms poll of chancy_jobs first
sees no job of that queue pending, retrying or running - the state a worker commits in
batches, at most 1 s apart - minus the first handler start). Handler start times come from
one file per worker process; `handler_span_s` (first to last handler start) is reported too.

Wakeup: one idle worker; 10 warm-up and 200 measured jobs pushed with push() 20 ms apart;
latency = handler start - time.time() right after push() returned (committed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import chancy_jobs
import psycopg
from chancy import Chancy, Job, Queue, Worker
from chancy.hub import Event
from driver import CpuMeter, interface_parser, logger, proc_status_mib
from psycopg import sql

QUEUE = "default"  # the queue the workers serve from their start
DRAIN_QUEUE = "drain"  # declared only to release the drain
BATCH = 1_000
WARMUP, SAMPLES, GAP_S = 10, 200, 0.02
RAISED_CONCURRENCY = 500
PROFILES: dict[str, dict[str, Any]] = {
    "default": {},
    "raised": {"concurrency": RAISED_CONCURRENCY, "polling_interval": 1, "eager_polling": True},
}
POLL_S = 0.05  # how often the driver looks at chancy_jobs during the drain
STALL_S = 60.0  # give up when the drain makes no progress for this long
BOOT_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


log = logger("chancy_driver")


def quiet_logger() -> logging.Logger:
    """chancy's own fallback logger (a plain StreamHandler on stderr), at WARNING."""
    logger = logging.getLogger("chancy.bench")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    return logger


def make_app(url: str) -> Chancy:
    return Chancy(url, log=quiet_logger())


def make_queue(name: str, profile: str) -> Queue:
    return Queue(name, executor=Chancy.Executor.Async, **PROFILES[profile])


# --- the worker process --------------------------------------------------------------------


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel send SIGTERM (a graceful chancy shutdown) if the driver dies."""
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    if os.getppid() != parent_pid:
        sys.exit("chancy_driver worker: parent already gone")


async def run_worker(url: str) -> None:
    """One chancy worker; prints one JSON line on stdout once it LISTENs and serves QUEUE."""
    async with make_app(url) as app:
        worker = Worker(app)
        serving: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def on_queue_started(event: Event) -> None:
            queue, executor = event.body["queue"], event.body["executor"]
            if queue.name == QUEUE and not serving.done():
                serving.set_result(queue.concurrency or executor.get_default_concurrency())

        worker.hub.on("worker.queue.started", on_queue_started)
        async with worker:  # start() returns once the LISTEN connection is up
            print(json.dumps({"concurrency": await serving}), flush=True)
            await worker.wait_for_shutdown()


# --- the driver's side of the worker processes ---------------------------------------------


class Workers:
    """Worker processes; `stop()` ends every one, whatever happened before."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.url = url
        self.tmp = tmp
        self.procs: list[asyncio.subprocess.Process] = []
        self.concurrency: int | None = None

    async def start(self, count: int) -> float:
        """Start `count` workers together; seconds until every one serves QUEUE."""
        env = {**os.environ, "CHANCY_BENCH_DIR": str(self.tmp)}
        started = time.monotonic()
        for index in range(count):
            with open(self.tmp / f"worker-{index}.log", "wb") as stderr:
                self.procs.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        __file__,
                        "--worker-child",
                        "--parent-pid",
                        str(os.getpid()),
                        "--database-url",
                        self.url,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=stderr,
                        env=env,
                    )
                )
        async with asyncio.timeout(BOOT_TIMEOUT_S):
            for index, proc in enumerate(self.procs):
                line = await proc.stdout.readline() if proc.stdout else b""
                if not line:
                    tail = (self.tmp / f"worker-{index}.log").read_text()[-2000:]
                    raise RuntimeError(f"worker {index} exited before it was ready:\n{tail}")
                self.concurrency = json.loads(line)["concurrency"]
        return time.monotonic() - started

    def memory_mib(self, field: str) -> list[float]:
        """VmRSS (now) or VmHWM (peak) of each worker process, MiB."""
        return [proc_status_mib(proc.pid, field) for proc in self.procs]

    def starts(self) -> list[tuple[int, float]]:
        """(seq, time.time()) of every handler start, all worker processes together."""
        rows = []
        for path in self.tmp.glob("starts-*.txt"):
            for line in path.read_text().splitlines():
                seq, started = line.split()
                rows.append((int(seq), float(started)))
        return rows

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                log(f"worker {proc.pid} ignored SIGTERM; killing it")
                proc.kill()
                await proc.wait()


@contextlib.asynccontextmanager
async def workers(url: str) -> AsyncIterator[Workers]:
    with tempfile.TemporaryDirectory(prefix="chancy-bench-") as tmp:
        group = Workers(url, Path(tmp))
        try:
            yield group
        finally:
            await group.stop()


# --- workloads -----------------------------------------------------------------------------


def noop_job(**options: Any) -> Job:
    return Job.from_func(chancy_jobs.record, **options)


async def unfinished(conn: psycopg.AsyncConnection[Any], table: str, queue: str) -> int:
    query = sql.SQL(
        "SELECT count(*) FILTER (WHERE state IN ('pending', 'retrying', 'running')),"
        " count(*) FILTER (WHERE state = 'failed') FROM {} WHERE queue = %s"
    ).format(sql.Identifier(table))
    left, failed = await (await conn.execute(query, (queue,))).fetchone() or (0, 0)
    if failed:
        raise RuntimeError(f"{failed} jobs failed")
    return int(left)


async def wait_finished(conn: psycopg.AsyncConnection[Any], table: str, queue: str) -> float:
    """time.time() of the first poll that finds no job of `queue` left unfinished."""
    last, progress_at = -1, time.monotonic()
    while left := await unfinished(conn, table, queue):
        if left != last:
            last, progress_at = left, time.monotonic()
        elif time.monotonic() - progress_at > STALL_S:
            raise RuntimeError(f"drain stalled with {left} jobs unfinished")
        await asyncio.sleep(POLL_S)
    return time.time()


async def drain(app: Chancy, args: argparse.Namespace) -> dict[str, Any]:
    async with workers(args.database_url) as group:
        boot = await group.start(args.processes)
        log(f"{args.processes} worker(s) ready in {boot:.2f} s; pushing {args.jobs} jobs")
        async for _ in app.push_many([noop_job(queue=DRAIN_QUEUE)] * args.jobs, batch_size=BATCH):
            pass
        async with await psycopg.AsyncConnection.connect(
            args.database_url, autocommit=True
        ) as conn:
            await conn.execute("ANALYZE")
            await conn.execute("CHECKPOINT")
            idle = group.memory_mib("VmRSS")
            log("releasing")
            meter = CpuMeter(conn.info.backend_pid, (proc.pid for proc in group.procs))
            await app.declare(make_queue(DRAIN_QUEUE, args.profile))
            meter.start()
            finished = await wait_finished(conn, f"{app.prefix}jobs", DRAIN_QUEUE)
            meter.stop()
        peak = group.memory_mib("VmHWM")
        starts = [started for _, started in group.starts()]
        concurrency = group.concurrency
    if len(starts) != args.jobs:
        raise RuntimeError(f"{len(starts)} handler starts for {args.jobs} jobs")
    first, last = min(starts), max(starts)
    log(f"drained in {finished - first:.2f} s (last handler start at {last - first:.2f} s)")
    return {
        "concurrency": concurrency,
        "jobs": args.jobs,
        "jobs_per_s": round(args.jobs / (finished - first), 1),
        "handler_span_s": round(last - first, 3),  # first to last handler start
        "boot_s": round(boot, 3),
        "rss_idle_mib": idle,
        "rss_peak_mib": peak,
        **meter.per_job_us(args.jobs),
    }


async def wakeup(app: Chancy, args: argparse.Namespace) -> dict[str, Any]:
    pushed: dict[int, float] = {}
    async with workers(args.database_url) as group:
        await group.start(1)
        for seq in range(WARMUP + SAMPLES):
            await app.push(noop_job(kwargs={"seq": seq}))
            pushed[seq] = time.time()
            await asyncio.sleep(GAP_S)
        deadline = time.monotonic() + 30
        while len(starts := dict(group.starts())) < len(pushed):
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(starts)} of {len(pushed)} jobs started")
            await asyncio.sleep(0.05)
        concurrency = group.concurrency
    latencies = [
        round((starts[seq] - pushed[seq]) * 1000, 3) for seq in range(WARMUP, WARMUP + SAMPLES)
    ]
    return {"concurrency": concurrency, "latencies_ms": latencies}


async def enqueue(app: Chancy, args: argparse.Namespace) -> dict[str, Any]:
    """No worker runs: every job pushed stays pending."""
    job = noop_job()
    started = time.perf_counter()
    for _ in range(args.jobs):
        await app.push(job)
    one = args.jobs / (time.perf_counter() - started)
    log(f"one at a time: {one:,.0f} jobs/s")
    started = time.perf_counter()
    async for _ in app.push_many([job] * args.jobs, batch_size=BATCH):
        pass
    batch = args.jobs / (time.perf_counter() - started)
    log(f"batches of {BATCH}: {batch:,.0f} jobs/s")
    async with await psycopg.AsyncConnection.connect(args.database_url) as conn:
        stored = await unfinished(conn, f"{app.prefix}jobs", QUEUE)
    if stored != 2 * args.jobs:
        raise RuntimeError(f"{stored} jobs stored, {2 * args.jobs} pushed")
    return {
        "jobs": args.jobs,
        "enqueue_one_per_s": round(one, 1),
        "enqueue_batch_per_s": round(batch, 1),
    }


WORKLOADS = {"drain": drain, "wakeup": wakeup, "enqueue": enqueue}


def notes(profile: str) -> str:
    queue = (
        "queue concurrency None (AsyncExecutor default: 100 per worker), polling_interval"
        " 5 s, eager_polling off (chancy's Queue defaults): a worker polls again only on a"
        " NOTIFY or after polling_interval, so a backlog drains at about 100 jobs per 5 s"
        " per worker"
        if profile == "default"
        else f"queue concurrency {RAISED_CONCURRENCY} per worker, polling_interval 1 s (the"
        " least: an integer column), eager_polling on (poll again as soon as a slot frees)"
    )
    return (
        f"profile {profile}: {queue}; AsyncExecutor; notifications (LISTEN/NOTIFY) on, as by"
        " default, so a push wakes an idle worker in both profiles; default plugins; chancy"
        " logger at WARNING (it logs every fetched job at INFO). Schema by Chancy.migrate();"
        " push() one job per transaction, push_many(batch_size=1000) one transaction per"
        " batch (one INSERT per job inside). Drain: jobs pushed to a not-yet-declared queue,"
        " ANALYZE; CHECKPOINT, released by declare() of that queue (its NOTIFY wakes every"
        " worker); end = first 50 ms poll of chancy_jobs finding none pending/running (workers"
        " write job states in batches every 1 s)."
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    # SIGTERM cancels the run, so the worker processes are stopped on the way out.
    main_task = asyncio.current_task()
    if main_task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    async with make_app(args.database_url) as app:
        await app.migrate()
        await app.declare(make_queue(QUEUE, args.profile))
        result = await WORKLOADS[args.workload](app, args)
    head = {"library": "chancy", "version": version("chancy"), "workload": args.workload}
    head["profile"] = args.profile
    if args.workload != "enqueue":
        head["processes"] = args.processes if args.workload == "drain" else 1
    return {**head, **result, "notes": notes(args.profile)}


def parse_args() -> argparse.Namespace:
    parser = interface_parser(__doc__.splitlines()[0], PROFILES, workload_required=False)
    parser.add_argument("--worker-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.worker_child and args.workload is None:
        parser.error("--workload is required")
    return args


def main() -> None:
    args = parse_args()
    if args.worker_child:
        die_with_parent(args.parent_pid)
        asyncio.run(run_worker(args.database_url))
        return
    try:
        result = asyncio.run(run(args))
    except asyncio.CancelledError:
        sys.exit("chancy_driver: terminated")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
