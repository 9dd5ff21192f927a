"""Where a drain's database time goes: skiplock's claim and finish statements, timed alone.

    .venv/bin/python bench/worker/statements.py [--batches 50,100,500] [--jobs 20000]

On a fresh database (throwaway cluster with default settings, or DATABASE_URL's server)
it enqueues --jobs jobs, runs ANALYZE and CHECKPOINT like the drain does, then claims and
finishes them in batches from one connection, one statement after the other (no worker,
no Python per job), and prints milliseconds per statement and the serial jobs/s:
- with every trigger on (what a worker pays),
- with the event-log trigger off (what the event log costs),
- with no trigger at all.
These are the same statements, run the same way as a worker session runs them
(sql/queries/claim_jobs.sql and finish_jobs.sql, prepared, enable_seqscan and jit off).
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

from cluster import fresh_database, server  # noqa: E402

from skiplock import store  # noqa: E402
from skiplock.worker import WORKER_SESSION  # noqa: E402

DISABLE = "ALTER TABLE skiplock.content_jobs DISABLE TRIGGER "
MODES = {
    "all triggers on": [],
    "event-log trigger off": [DISABLE + "content_jobs_log_update"],
    "no triggers": [DISABLE + "ALL"],
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


def measure(url: str, jobs: int, batch: int, setup: list[str]) -> tuple[float, float]:
    """Milliseconds per claim and per finish statement."""
    with psycopg.connect(url, autocommit=True) as conn:
        company = conn.execute(
            "INSERT INTO skiplock.companies (name) VALUES ('bench') RETURNING id"
        ).fetchone()
        conn.execute(
            "SELECT skiplock.enqueue_content_jobs(%s, 'noop', array_fill('{}'::jsonb, ARRAY[%s]))",
            (company[0] if company else None, jobs),
        )
        conn.execute("ANALYZE skiplock.content_jobs")
        conn.execute("CHECKPOINT")
        conn.execute(WORKER_SESSION)
        for statement in setup:
            conn.execute(statement)
        claim = {"worker_id": "bench", "job_types": ["noop"], "limit": batch, "lease_seconds": 30}
        claiming = finishing = 0.0
        rounds = jobs // batch
        for _ in range(rounds):
            started = time.perf_counter()
            ids = [row[0] for row in conn.execute(store.query("claim_jobs"), claim, prepare=True)]
            claimed = time.perf_counter()
            conn.execute(store.query("finish_jobs"), finish_params(ids), prepare=True).fetchall()
            claiming += claimed - started
            finishing += time.perf_counter() - claimed
    return claiming / rounds * 1000, finishing / rounds * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", default="50,100,500")
    parser.add_argument("--jobs", type=int, default=20_000)
    args = parser.parse_args()
    print("| batch | triggers | claim ms | finish ms | µs per job (both) | serial jobs/s |")
    print("|---|---|---|---|---|---|")
    with server() as url:
        for batch in (int(b) for b in args.batches.split(",")):
            for mode, setup in MODES.items():
                with fresh_database(url) as database:
                    claim_ms, finish_ms = measure(database, args.jobs, batch, setup)
                per_job = (claim_ms + finish_ms) * 1000 / batch
                print(
                    f"| {batch} | {mode} | {claim_ms:.2f} | {finish_ms:.2f} | {per_job:.0f} "
                    f"| {1e6 / per_job:,.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
