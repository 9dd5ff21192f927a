"""Webhook figures: what deliveries cost a drain, and how soon they arrive.

    .venv/bin/python bench/webhooks/run.py [--jobs 1000] [--repeat 5] [--concurrency 10]

Real `skiplock worker` processes (SKIPLOCK_WEBHOOK_ALLOW_PRIVATE=true) and a receiver
process on 127.0.0.1 that answers 200 at once and notes when each delivery arrived. A
throwaway Postgres with default settings unless DATABASE_URL names a server (as
bench/worker/run.py).

- drain: N no-op jobs drained by one worker process, as bench/worker/run.py measures it
  (jobs/s = N / (last finished_at - first started_at)), in a fresh database each time,
  without a webhook and with one (every job's done event is a delivery), the two variants
  interleaved ABBA over the repetitions so drift on a shared machine falls on both. Also the
  worker's CPU seconds over the drain (utime + stime from /proc).
- latency, burst: for the drains with a webhook, receiver arrival - the done event's
  created_at (the completing statement's start, a little before its commit).
- latency, steady: 200 jobs enqueued one at a time 20 ms apart, same measure.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "service"))

from cluster import free_port, fresh_database, server  # noqa: E402


def _worker_bench() -> Any:
    """bench/worker/run.py, for its Workers and helpers (both files are named run.py)."""
    spec = importlib.util.spec_from_file_location("worker_bench", REPO / "bench/worker/run.py")
    if spec is None or spec.loader is None:
        raise SystemExit("bench/worker/run.py is missing")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


worker_bench = _worker_bench()
ALLOW = {"SKIPLOCK_WEBHOOK_ALLOW_PRIVATE": "true"}


class Receiver:
    """bench/webhooks/receiver.py in its own process, writing `<path> <eventId> <arrival>`
    lines; each run's webhook has a path of its own (event ids repeat across databases)."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.log = tmp / "arrivals.txt"
        self.proc = subprocess.Popen(  # noqa: S603  (our own script, fixed arguments)
            [sys.executable, str(HERE / "receiver.py"), str(self.port), str(self.log)]
        )
        deadline = time.monotonic() + 10
        while not self.log.exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    def url(self, run: str) -> str:
        return f"http://127.0.0.1:{self.port}/hook/{run}"

    def arrivals(self, run: str) -> dict[int, float]:
        """eventId -> arrival of the deliveries to this run's webhook."""
        found = {}
        for line in self.log.read_text().splitlines():
            path, event_id, arrived = line.split()
            if path == f"/hook/{run}":
                found[int(event_id)] = float(arrived)
        return found

    def wait_for(self, run: str, count: int) -> None:
        """Until `count` deliveries of this run arrived (120 s at most)."""
        deadline = time.monotonic() + 120
        while len(self.arrivals(run)) < count and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def cpu_seconds(pid: int, children: bool = False) -> float:
    """utime + stime of a process (and of its children it has reaped, with children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_cpu(conn: psycopg.Connection) -> float:
    """CPU seconds of the whole cluster so far: the postmaster with the children it reaped,
    and its live children (backends, background processes)."""
    backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    postmaster = int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])
    total = cpu_seconds(postmaster, children=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    total += cpu_seconds(int(entry.name))
            except (OSError, ValueError):
                continue
    return total


def add_webhook(conn: psycopg.Connection, company_id: uuid.UUID, url: str) -> None:
    """A webhook for the company's done events, in SQL (the bench has no API running)."""
    from skiplock.webhooks import new_secret

    conn.execute(
        "INSERT INTO skiplock.webhooks (company_id, url, events, secret) "
        "VALUES (%s, %s, ARRAY['content_job.done'], %s)",
        (company_id, url, new_secret()),
    )


def drain(server_url: str, jobs: int, concurrency: int, receiver: Receiver | None) -> dict:
    with fresh_database(server_url) as url, tempfile.TemporaryDirectory() as tmp:
        os.environ.update(ALLOW)  # Workers passes os.environ on
        workers = worker_bench.Workers(url, 1, concurrency, "bench_noop", Path(tmp))
        try:
            workers.wait_registered()
            with psycopg.connect(url, autocommit=True) as conn:
                company_id = worker_bench.company(conn)
                run = uuid.uuid4().hex
                if receiver is not None:
                    add_webhook(conn, company_id, receiver.url(run))
                conn.execute(
                    "INSERT INTO skiplock.content_jobs (id, company_id, job_type, run_at) "
                    "SELECT skiplock.new_job_id(), %s, 'bench_noop', 'infinity' "
                    "FROM generate_series(1, %s)",
                    (company_id, jobs),
                )
                conn.execute("ANALYZE skiplock.content_jobs")
                conn.execute("CHECKPOINT")
                cpu_before = cpu_seconds(workers.procs[0].pid)
                pg_before = postgres_cpu(conn)
                conn.execute("UPDATE skiplock.content_jobs SET run_at = now(), updated_at = now()")
                while conn.execute(
                    "SELECT count(*) FROM skiplock.content_jobs WHERE status <> 'done'"
                ).fetchone()[0]:
                    time.sleep(0.01)
                cpu = cpu_seconds(workers.procs[0].pid) - cpu_before
                pg_drain = postgres_cpu(conn) - pg_before
                if receiver is not None:  # and the deliveries that follow the drain
                    receiver.wait_for(run, jobs)
                    time.sleep(0.1)  # their outcomes written
                total_cpu = cpu_seconds(workers.procs[0].pid) - cpu_before
                pg_cpu = postgres_cpu(conn) - pg_before
                first, last = conn.execute(
                    "SELECT min(started_at), max(finished_at) FROM skiplock.content_jobs"
                ).fetchone()
                latencies = _latencies(conn, receiver, run, jobs) if receiver else []
        finally:
            workers.stop()
    seconds = (last - first).total_seconds()
    return {
        "jobs_per_s": jobs / seconds,
        "cpu_s": cpu,
        "total_cpu_s": total_cpu,
        "pg_cpu_s": pg_cpu,
        "pg_drain_s": pg_drain,
        "latencies_ms": latencies,
    }


def _latencies(conn: psycopg.Connection, receiver: Receiver, run: str, count: int) -> list[float]:
    """Arrival - the done event's created_at, once every delivery arrived, in ms."""
    deadline = time.monotonic() + 120
    events = dict(
        conn.execute(
            "SELECT id, extract(epoch FROM created_at)::float8 FROM skiplock.content_job_events "
            "WHERE type = 'content_job.done'"
        ).fetchall()
    )
    while time.monotonic() < deadline:
        arrived = {e: t for e, t in receiver.arrivals(run).items() if e in events}
        if len(arrived) >= count:
            break
        time.sleep(0.05)
    return sorted((arrived[e] - events[e]) * 1000 for e in arrived)


def steady(server_url: str, receiver: Receiver, count: int = 200) -> list[float]:
    with fresh_database(server_url) as url, tempfile.TemporaryDirectory() as tmp:
        os.environ.update(ALLOW)
        workers = worker_bench.Workers(url, 1, 10, "bench_noop", Path(tmp))
        try:
            workers.wait_registered()
            with psycopg.connect(url, autocommit=True) as conn:
                company_id = worker_bench.company(conn)
                run = uuid.uuid4().hex
                add_webhook(conn, company_id, receiver.url(run))
                statement = "SELECT skiplock.enqueue_content_job(%s, 'bench_noop')"
                for _ in range(count):
                    conn.execute(statement, (company_id,), prepare=True)
                    time.sleep(0.02)
                return _latencies(conn, receiver, run, count)
        finally:
            workers.stop()


def pct(values: list[float], p: float) -> float:
    return worker_bench.pct(values, p)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with server() as url, tempfile.TemporaryDirectory() as tmp:
        receiver = Receiver(Path(tmp))
        try:
            version = psycopg.connect(url).execute("SHOW server_version").fetchone()[0]
            print(
                f"PostgreSQL {version}; {os.cpu_count()} cores; {args.jobs} no-op jobs; "
                f"concurrency {args.concurrency}; {args.repeat} runs each, interleaved ABBA"
            )
            runs: dict[str, list[dict]] = {"without": [], "with": []}
            for n in range(args.repeat):
                order = ("without", "with") if n % 2 == 0 else ("with", "without")
                for variant in order:
                    hook = receiver if variant == "with" else None
                    result = drain(url, args.jobs, args.concurrency, hook)
                    runs[variant].append(result)
                    print(
                        f"  run {n + 1} {variant:7} webhook: {result['jobs_per_s']:,.0f} jobs/s, "
                        f"worker CPU {result['cpu_s']:.2f} s during the drain, "
                        f"{result['total_cpu_s']:.2f} s with its deliveries; "
                        f"Postgres CPU {result['pg_drain_s']:.2f} s during the drain, "
                        f"{result['pg_cpu_s']:.2f} s in all",
                        flush=True,
                    )
            for variant, results in runs.items():
                rates = [r["jobs_per_s"] for r in results]
                print(
                    f"drain {variant} webhook: {statistics.median(rates):,.0f} jobs/s "
                    f"[{min(rates):,.0f}-{max(rates):,.0f}]; CPU seconds (median): worker "
                    f"{statistics.median(r['cpu_s'] for r in results):.2f} during the drain, "
                    f"{statistics.median(r['total_cpu_s'] for r in results):.2f} in all; "
                    f"Postgres {statistics.median(r['pg_drain_s'] for r in results):.2f} during "
                    f"the drain, {statistics.median(r['pg_cpu_s'] for r in results):.2f} in all"
                )
            ratio = statistics.median(r["jobs_per_s"] for r in runs["with"]) / statistics.median(
                r["jobs_per_s"] for r in runs["without"]
            )
            print(f"with / without: {ratio:.2f}")
            burst = sorted(v for r in runs["with"] for v in r["latencies_ms"])
            print(
                f"latency, burst of {args.jobs} (done event -> receiver): "
                f"p50 {pct(burst, 50):.1f} ms, p99 {pct(burst, 99):.1f} ms, "
                f"max {pct(burst, 100):.1f} ms ({len(burst)} deliveries)"
            )
            calm = steady(url, receiver)
            print(
                f"latency, steady (200 jobs 20 ms apart): p50 {pct(calm, 50):.1f} ms, "
                f"p99 {pct(calm, 99):.1f} ms, max {pct(calm, 100):.1f} ms"
            )
        finally:
            receiver.stop()


if __name__ == "__main__":
    main()
