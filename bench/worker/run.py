"""Worker figures: drain rate, idle wake-up latency, RSS. Real `skiplock worker` processes.

    .venv/bin/python bench/worker/run.py [--jobs 20000] [--concurrency 10] [--repeat 3]

Starts a throwaway Postgres with default settings (fsync and synchronous_commit on) unless
DATABASE_URL names a server whose role may create databases. Each measurement gets a fresh
database. Workers run with SKIPLOCK_LOG_LEVEL=warning (a log line per transition costs
about as much as the queue work of a no-op job).

- drain: N jobs bulk-inserted (one statement, full event log and triggers), ANALYZE and
  CHECKPOINT, then 1 or 2 worker processes, started and idle before the insert, drain them.
  jobs/s = N / (last finished_at - first started_at), from the database.
- wake-up: one idle worker; 10 warm-up jobs, then 200 enqueued one at a time 20 ms apart
  with enqueue_content_job(); latency = handler start (time.time() in the handler) - the
  moment the enqueue's commit returned to the client.
- RSS: each worker's VmRSS when idle after start, and VmHWM (peak) after the drain.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "service"))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "bench" / "peers"))

from cluster import fresh_database, server  # noqa: E402
from driver import CpuMeter, proc_status_mib  # noqa: E402  (bench/peers/driver.py)


class Workers:
    def __init__(self, url: str, count: int, concurrency: int, types: str, tmp: Path) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "SKIPLOCK_LOG_LEVEL": "warning",
            "SKIPLOCK_STORAGE_DIR": str(tmp / "storage"),
            "BENCH_STARTS": str(tmp / "starts.txt"),
            # This checkout's skiplock, whatever the venv has installed.
            "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO / "service")]),
        }
        self.procs = [
            subprocess.Popen(  # noqa: S603  (our own CLI, fixed arguments)
                [
                    sys.executable,
                    "-m",
                    "skiplock",
                    "worker",
                    "--handlers",
                    "bench_handlers",
                    "--types",
                    types,
                    "--concurrency",
                    str(concurrency),
                ],
                env=env,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(count)
        ]
        self.url = url

    def wait_registered(self) -> float:
        started = time.monotonic()
        with psycopg.connect(self.url, autocommit=True) as conn:
            while conn.execute("SELECT count(*) FROM skiplock.workers").fetchone()[0] < len(
                self.procs
            ):
                time.sleep(0.01)
        time.sleep(0.3)  # LISTEN issued and the first poll done
        return time.monotonic() - started

    def rss_mib(self, field: str = "VmRSS") -> list[float]:
        return [proc_status_mib(proc.pid, field) for proc in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(30)


def company(conn: psycopg.Connection) -> uuid.UUID:
    return conn.execute(
        "INSERT INTO skiplock.companies (name) VALUES ('bench') RETURNING id"
    ).fetchone()[0]


def drain(server_url: str, jobs: int, processes: int, concurrency: int) -> dict[str, float]:
    with fresh_database(server_url) as url:
        return drain_in(url, jobs, processes, concurrency)


def drain_in(url: str, jobs: int, processes: int, concurrency: int) -> dict[str, float]:
    """The drain workload in a migrated, empty database."""
    with tempfile.TemporaryDirectory() as tmp:
        workers = Workers(url, processes, concurrency, "bench_noop", Path(tmp))
        try:
            boot = workers.wait_registered()
            idle = workers.rss_mib()
            with psycopg.connect(url, autocommit=True) as conn:
                company_id = company(conn)
                # Park the jobs in the future while ANALYZE/CHECKPOINT run, then release them
                # all at once with one UPDATE (one doorbell).
                conn.execute(
                    "INSERT INTO skiplock.content_jobs (id, company_id, job_type, run_at) "
                    "SELECT skiplock.new_job_id(), %s, 'bench_noop', 'infinity' "
                    "FROM generate_series(1, %s)",
                    (company_id, jobs),
                )
                conn.execute("ANALYZE skiplock.content_jobs")
                conn.execute("CHECKPOINT")
                meter = CpuMeter(conn.info.backend_pid, (p.pid for p in workers.procs))
                conn.execute("UPDATE skiplock.content_jobs SET run_at = now(), updated_at = now()")
                # From the release on: the releasing UPDATE is set-up, not the drain (PgQueuer's
                # jobs are released by its own timer, with no statement of ours).
                meter.start()
                # A cheap poll (the company's status index), so the poll itself hardly
                # shows in the database CPU measured over the drain.
                unfinished = (
                    "SELECT EXISTS (SELECT FROM skiplock.content_jobs "
                    "WHERE company_id = %s AND status IN ('queued', 'running'))"
                )
                while conn.execute(unfinished, (company_id,)).fetchone()[0]:
                    time.sleep(0.02)
                meter.stop()
                first, last = conn.execute(
                    "SELECT min(started_at), max(finished_at) FROM skiplock.content_jobs"
                ).fetchone()
            peak = workers.rss_mib("VmHWM")
        finally:
            workers.stop()
    seconds = (last - first).total_seconds()
    return {
        "jobs_per_s": jobs / seconds,
        "seconds": seconds,
        "boot_s": boot,
        "idle_rss_mib": max(idle),
        "peak_rss_mib": max(peak),
        **meter.per_job_us(jobs),
    }


def wake_up(server_url: str, count: int = 200, warmup: int = 10) -> list[float]:
    with fresh_database(server_url) as url:
        return wake_up_in(url, count, warmup)


def wake_up_in(url: str, count: int = 200, warmup: int = 10) -> list[float]:
    """The wake-up workload in a migrated, empty database."""
    with tempfile.TemporaryDirectory() as tmp:
        starts_file = Path(tmp) / "starts.txt"
        workers = Workers(url, 1, 10, "bench_wake", Path(tmp))
        committed: dict[str, float] = {}
        try:
            workers.wait_registered()
            with psycopg.connect(url, autocommit=True) as conn:
                company_id = company(conn)
                statement = "SELECT skiplock.enqueue_content_job(%s, 'bench_wake')"
                conn.execute(statement, (company_id,), prepare=True)  # prepare it
                for i in range(warmup + count):
                    job_id = conn.execute(statement, (company_id,), prepare=True).fetchone()[0]
                    if i >= warmup:
                        committed[str(job_id)] = time.time()
                    time.sleep(0.02)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    lines = starts_file.read_text().splitlines() if starts_file.exists() else []
                    if len(lines) >= warmup + count + 1:
                        break
                    time.sleep(0.05)
        finally:
            workers.stop()
        started = dict(line.split() for line in starts_file.read_text().splitlines())
    return sorted((float(started[j]) - t) * 1000 for j, t in committed.items())


NOISY_BACKLOG = 10_000
NOISY_GAP_S = 0.1
CLAIMS = ("fair", "fifo")


def noisy_in(
    url: str, claim: str = "fair", concurrency: int = 10, backlog: int = NOISY_BACKLOG
) -> dict[str, float]:
    """The noisy-neighbour workload in a migrated, empty database: company A's 10,000 no-op
    jobs are released at once to one idle worker while company B submits one job every
    100 ms; B's waits (its commit returned -> its handler started, ms) beside A's drain rate.
    claim "fifo" puts the claim skiplock had before 0006 (bench/worker/fifo_claim.sql) in
    place of claim_content_jobs(), for comparison."""
    with tempfile.TemporaryDirectory() as tmp:
        if claim == "fifo":
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute((HERE / "fifo_claim.sql").read_text())
        starts_file = Path(tmp) / "starts.txt"
        workers = Workers(url, 1, concurrency, "bench_wake", Path(tmp))
        submitted: dict[str, float] = {}
        try:
            workers.wait_registered()
            with psycopg.connect(url, autocommit=True) as conn:
                busy, quiet = company(conn), company(conn)
                conn.execute(
                    "INSERT INTO skiplock.content_jobs (id, company_id, job_type, run_at) "
                    "SELECT skiplock.new_job_id(), %s, 'bench_wake', 'infinity' "
                    "FROM generate_series(1, %s)",
                    (busy, backlog),
                )
                conn.execute("ANALYZE skiplock.content_jobs")
                conn.execute("CHECKPOINT")
                one = "SELECT skiplock.enqueue_content_job(%s, 'bench_wake')"
                left = (
                    "SELECT EXISTS (SELECT FROM skiplock.content_jobs "
                    "WHERE company_id = %s AND status IN ('queued', 'running'))"
                )
                conn.execute("UPDATE skiplock.content_jobs SET run_at = now(), updated_at = now()")
                while conn.execute(left, (busy,)).fetchone()[0]:
                    job_id = conn.execute(one, (quiet,), prepare=True).fetchone()[0]
                    submitted[str(job_id)] = time.time()
                    time.sleep(NOISY_GAP_S)
                while conn.execute(left, (quiet,)).fetchone()[0]:
                    time.sleep(0.02)
                first, last = conn.execute(
                    "SELECT min(started_at), max(finished_at) FROM skiplock.content_jobs "
                    "WHERE company_id = %s",
                    (busy,),
                ).fetchone()
        finally:
            workers.stop()
        started = dict(line.split() for line in starts_file.read_text().splitlines())
    waits = sorted((float(started[j]) - t) * 1000 for j, t in submitted.items())
    return {
        "quiet_jobs": len(waits),
        "quiet_wait_p50_ms": pct(waits, 50),
        "quiet_wait_p99_ms": pct(waits, 99),
        "quiet_wait_max_ms": waits[-1],
        "busy_jobs_per_s": backlog / (last - first).total_seconds(),
    }


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} [{min(values):,.0f}-{max(values):,.0f}]"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with server() as url:
        version = psycopg.connect(url).execute("SHOW server_version").fetchone()[0]
        print(
            f"PostgreSQL {version}; {os.cpu_count()} cores; {args.jobs} no-op jobs; "
            f"concurrency {args.concurrency} per process; {args.repeat} runs each"
        )
        for processes in (1, 2):
            runs = [drain(url, args.jobs, processes, args.concurrency) for _ in range(args.repeat)]
            rate = summary([r["jobs_per_s"] for r in runs])
            print(
                f"drain, {processes} process(es): jobs/s {rate}; "
                f"boot {statistics.median(r['boot_s'] for r in runs):.2f} s; "
                f"RSS idle {statistics.median(r['idle_rss_mib'] for r in runs):.1f} MiB, "
                f"peak {statistics.median(r['peak_rss_mib'] for r in runs):.1f} MiB"
            )
        rounds = [wake_up(url) for _ in range(args.repeat)]
        for name, p in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100)):
            values = [pct(r, p) for r in rounds]
            print(
                f"wake-up {name}: {statistics.median(values):.2f} ms "
                f"[{min(values):.2f}-{max(values):.2f}]"
            )


if __name__ == "__main__":
    main()
