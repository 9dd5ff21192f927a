"""Time the batched operations of SPEC §8 over 100,000 jobs: bulk cancel, bulk retry, purge.

    .venv/bin/python bench/soak/batches.py [--jobs 100000]

A throwaway Postgres with default settings (fsync on) unless DATABASE_URL names a server
whose role may create databases. One company; the jobs are inserted by one statement, then
canceled, retried, canceled again, aged past a day and purged, each as the service does it
(skiplock.bulk and skiplock.worker.retention, 1,000 jobs per transaction).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "service"))
sys.path.insert(0, str(HERE.parent))

from cluster import fresh_database, server  # noqa: E402

from skiplock import bulk, db  # noqa: E402
from skiplock.worker import retention  # noqa: E402


async def measure(url: str, jobs: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        company = conn.execute(
            "INSERT INTO skiplock.companies (name) VALUES ('bench') RETURNING id"
        ).fetchall()[0][0]
        conn.execute(
            "INSERT INTO skiplock.content_jobs (id, company_id, job_type) "
            "SELECT skiplock.new_job_id(), %s, 'noop' FROM generate_series(1, %s)",
            (company, jobs),
        )
        conn.execute("ANALYZE skiplock.content_jobs")
    pool = await db.open_pool(url, min_size=1, max_size=2, name="bench")
    try:
        for name, run, statuses in (
            ("bulk cancel", bulk.cancel_matching, bulk.CANCELABLE),
            ("bulk retry", bulk.retry_matching, bulk.RETRYABLE),
            ("bulk cancel again", bulk.cancel_matching, bulk.CANCELABLE),
        ):
            started = time.perf_counter()
            count = await run(pool.connection, company, bulk.JobFilter(statuses))
            report(name, count, time.perf_counter() - started)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "UPDATE skiplock.content_jobs SET created_at = now() - interval '3 days', "
                "finished_at = now() - interval '2 days', updated_at = now()"
            )
            conn.execute("VACUUM ANALYZE skiplock.content_jobs")
        started = time.perf_counter()
        purged = await retention.run_once(pool, 86_400, retention.storage_lookup())
        report(f"purge ({purged.events} events)", purged.jobs, time.perf_counter() - started)
    finally:
        await pool.close()


def report(name: str, count: int, seconds: float) -> None:
    per_batch = seconds / max(count, 1) * 1000 * 1000
    print(f"{name}: {count} jobs in {seconds:.2f} s ({per_batch:.1f} ms per 1,000)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    args = parser.parse_args()
    with server() as server_url, fresh_database(server_url) as url:
        asyncio.run(measure(url, args.jobs))


if __name__ == "__main__":
    main()
