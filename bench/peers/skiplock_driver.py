"""skiplock's driver for the side-by-side benchmark (interface: bench/peers/README.md).

Runs in the project's venv (`.venv/bin/python`), not bench/.venv: it measures this
checkout. drain, wakeup and noisy (noisy neighbour, skiplock only) reuse bench/worker/run.py;
enqueue goes through SQL:
`enqueue_content_job()` one call per job, and `enqueue_content_jobs()` (one statement
per batch of 1,000).
"""

from __future__ import annotations

import json
import sys
import time
from importlib.metadata import version
from pathlib import Path

import psycopg

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH / "worker"))
sys.path.insert(0, str(BENCH))

import run as worker_bench  # noqa: E402  (bench/worker/run.py)
from driver import interface_parser  # noqa: E402  (bench/peers/driver.py)

from skiplock import db  # noqa: E402

PROFILES = {"default": 10, "raised": 100}  # worker --concurrency
BATCH = 1000


def enqueue(url: str, jobs: int) -> dict[str, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        company_id = worker_bench.company(conn)
        one = "SELECT skiplock.enqueue_content_job(%s, 'bench_noop')"
        started = time.perf_counter()
        for _ in range(jobs):
            conn.execute(one, (company_id,), prepare=True)
        one_per_s = jobs / (time.perf_counter() - started)
        # One enqueue_content_jobs() call per batch: one statement, one trigger run.
        batch = "SELECT skiplock.enqueue_content_jobs(%s, 'bench_noop', %s::jsonb[])"
        size, batches = min(BATCH, jobs), max(1, jobs // BATCH)
        started = time.perf_counter()
        for _ in range(batches):
            conn.execute(batch, (company_id, ["{}"] * size), prepare=True)
        batch_per_s = batches * size / (time.perf_counter() - started)
    return {"enqueue_one_per_s": one_per_s, "enqueue_batch_per_s": batch_per_s}


def main() -> None:
    parser = interface_parser(__doc__.splitlines()[0], PROFILES)
    parser.add_argument(
        "--claim",
        choices=worker_bench.CLAIMS,
        default="fair",
        help="noisy: the shipped claim (fair) or the one before 0006 (fifo)",
    )
    args = parser.parse_args()
    db.migrate(args.database_url)
    concurrency = PROFILES[args.profile]
    result: dict[str, object] = {
        "library": "skiplock",
        "version": version("skiplock"),
        "workload": args.workload,
        "profile": args.profile,
        "notes": f"worker --concurrency {concurrency}; full event log and triggers on",
    }
    if args.workload == "drain":
        figures = worker_bench.drain_in(args.database_url, args.jobs, args.processes, concurrency)
        result |= {
            "processes": args.processes,
            "concurrency": concurrency,
            "jobs": args.jobs,
            "jobs_per_s": figures["jobs_per_s"],
            "boot_s": figures["boot_s"],
            "rss_idle_mib": [figures["idle_rss_mib"]],
            "rss_peak_mib": [figures["peak_rss_mib"]],
            "db_cpu_us_per_job": figures["db_cpu_us_per_job"],
            "worker_cpu_us_per_job": figures["worker_cpu_us_per_job"],
        }
    elif args.workload == "wakeup":
        result["latencies_ms"] = worker_bench.wake_up_in(args.database_url)
    elif args.workload == "noisy":
        result |= worker_bench.noisy_in(args.database_url, args.claim, backlog=args.jobs)
    else:
        result |= {"jobs": args.jobs, **enqueue(args.database_url, args.jobs)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
