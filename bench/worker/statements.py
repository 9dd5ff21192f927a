"""Where a drain's database time goes: skiplock's claim and finish statements, timed alone.

    .venv/bin/python bench/worker/statements.py [--batches 50,100,500] [--jobs 20000]
                                                [--companies 1]

On a fresh database (throwaway cluster with default settings, or DATABASE_URL's server)
it enqueues --jobs jobs (spread over --companies companies), runs ANALYZE and CHECKPOINT
like the drain does, then claims and finishes them in batches from one connection, one
statement after the other (no worker, no Python per job), and prints milliseconds per
statement, the serial jobs/s, and the Postgres CPU per job (from /proc):
- as shipped: the claim and finish write their own events (claim_content_jobs(),
  finish_content_jobs());
- "no events": the same with the event rows left out (what the event log costs);
- "FIFO claim": the claim of 0004 (bench/worker/fifo_claim.sql) in place of the fair one
  (what companies taking turns costs).
These are the statements a worker runs (sql/queries/claim_jobs.sql and finish_jobs.sql,
prepared), with no session setting: the functions carry their own.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "service"))
sys.path.insert(0, str(HERE.parent))

from cluster import fresh_database, server, skiplock_functions  # noqa: E402

sys.path.insert(0, str(HERE.parent / "peers"))
from driver import postgres_cpu_seconds  # noqa: E402  (bench/peers/driver.py)

from skiplock import store  # noqa: E402

MODES = {
    "as shipped": lambda: [],
    "no events": lambda: [skiplock_functions(events=False)],
    "FIFO claim": lambda: [(HERE / "fifo_claim.sql").read_text()],
}


def finish_params(ids: list[Any]) -> dict[str, Any]:
    none: list[None] = [None] * len(ids)
    return {
        "worker_id": "bench",
        "reason": "",
        "job_ids": ids,
        "attempts": [1] * len(ids),
        "statuses": ["done"] * len(ids),
        "refunds": [False] * len(ids),
        "progress": none,
        **dict.fromkeys(["error_messages", "run_ats", "asset_ids", "providers"], none),
        **dict.fromkeys(["object_keys", "content_types", "byte_sizes", "sha256s"], none),
        "filenames": none,
    }


def measure(
    url: str, jobs: int, batch: int, companies: int, setup: list[str]
) -> tuple[float, float, float]:
    """Milliseconds per claim and per finish statement, and Postgres CPU µs per job."""
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in setup:
            conn.execute(statement)
        ids = conn.execute(
            "INSERT INTO skiplock.companies (name) "
            "SELECT 'bench ' || n FROM generate_series(1, %s) AS n RETURNING id",
            (companies,),
        ).fetchall()
        for (company,) in ids:
            conn.execute(
                "SELECT skiplock.enqueue_content_jobs(%s, 'noop', "
                "array_fill('{}'::jsonb, ARRAY[%s]))",
                (company, jobs // companies),
            )
        conn.execute("ANALYZE skiplock.content_jobs")
        conn.execute("CHECKPOINT")
        claim = {
            "worker_id": "bench",
            "job_types": ["noop"],
            "limit": batch,
            "lease_seconds": 30,
            "after": None,
        }
        claiming = finishing = 0.0
        rounds = jobs // batch
        cpu = postgres_cpu_seconds(conn.info.backend_pid)
        for _ in range(rounds):
            started = time.perf_counter()
            rows = conn.execute(store.query("claim_jobs"), claim, prepare=True).fetchall()
            claimed = time.perf_counter()
            conn.execute(
                store.query("finish_jobs"), finish_params([r[0] for r in rows]), prepare=True
            ).fetchall()
            claiming += claimed - started
            finishing += time.perf_counter() - claimed
            claim["after"] = rows[-1][1] if rows else None
        cpu = postgres_cpu_seconds(conn.info.backend_pid) - cpu
    return claiming / rounds * 1000, finishing / rounds * 1000, cpu / (rounds * batch) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", default="50,100,500")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--companies", type=int, default=1)
    args = parser.parse_args()
    print(
        "| companies | batch | statements | claim ms | finish ms | µs per job (both) "
        "| serial jobs/s | Postgres CPU µs/job |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with server() as url:
        for batch in (int(b) for b in args.batches.split(",")):
            for mode, setup in MODES.items():
                with fresh_database(url) as database:
                    claim_ms, finish_ms, cpu = measure(
                        database, args.jobs, batch, args.companies, setup()
                    )
                per_job = (claim_ms + finish_ms) * 1000 / batch
                print(
                    f"| {args.companies} | {batch} | {mode} | {claim_ms:.2f} | {finish_ms:.2f} "
                    f"| {per_job:.0f} | {1e6 / per_job:,.0f} | {cpu:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
