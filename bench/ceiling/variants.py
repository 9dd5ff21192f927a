"""What one piece of skiplock's schema costs the claim: the pgbench ceiling case (claim of
--batch + finish, event log on, 1 connection; ceiling.py) on a freshly migrated database
with one change applied, interleaved with the unchanged schema, --repeat times; the median
jobs/s and µs a job of each, and the difference to the first variant named.

    .venv/bin/python bench/ceiling/variants.py postgresql://…/postgres [--batch 100]
        [--repeat 3] [baseline no-created-idx random-ids ...]

The server URL's role must be allowed to create databases: each measurement gets its own,
migrated and dropped afterwards (bench/cluster.py).
A variant drops an index, turns the webhook outbox trigger off, or gives the queued jobs
random ids (gen_random_uuid(), the column default) instead of skiplock.new_job_id()'s.
Diagnostics, not fixes: most variants break something SPEC asks for.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import ceiling  # noqa: E402  (bench/ceiling/ceiling.py)
from cluster import fresh_database  # noqa: E402  (bench/cluster.py)

VARIANTS = {
    "baseline": "",
    "no-created-idx": "DROP INDEX skiplock.content_jobs_company_created_idx",
    "no-status-idx": "DROP INDEX skiplock.content_jobs_company_status_idx",
    "no-lease-idx": "DROP INDEX skiplock.content_jobs_lease_idx",
    "no-event-order-idx": "DROP INDEX skiplock.content_job_events_order_idx",
    "no-event-company-idx": "DROP INDEX skiplock.content_job_events_company_idx",
    "no-event-job-idx": "DROP INDEX skiplock.content_job_events_job_idx",
    "no-event-brin": "DROP INDEX skiplock.content_job_events_created_brin",
    "no-outbox": "ALTER TABLE skiplock.content_job_events "
    "DISABLE TRIGGER content_job_events_outbox",
    "fillfactor-80": "ALTER TABLE skiplock.content_jobs SET (fillfactor = 80)",
    # ceiling.fill() inserts with new_job_id(); this makes it fall back to the default.
    "random-ids": "CREATE OR REPLACE FUNCTION skiplock.new_job_id() RETURNS uuid "
    "LANGUAGE sql VOLATILE AS 'SELECT gen_random_uuid()'",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server")
    parser.add_argument("--batch", type=int, default=100, choices=(1, 100))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("variants", nargs="*", help=f"of: {', '.join(VARIANTS)} (default: all)")
    args = parser.parse_intermixed_args()
    args.variants = args.variants or list(VARIANTS)
    unknown = [name for name in args.variants if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    case = next(
        c
        for c in ceiling.CASES
        if c.schema == "skiplock" and c.batch == args.batch and c.triggers and c.clients == 1
    )
    jobs_s: dict[str, list[float]] = {name: [] for name in args.variants}
    for rep in range(args.repeat):
        for name in args.variants:
            with fresh_database(args.server) as url:
                if VARIANTS[name]:
                    with psycopg.connect(url, autocommit=True) as conn:
                        conn.execute(VARIANTS[name])
                figure = ceiling.run_case(url, case, args.seconds)["jobs_s"]
            jobs_s[name].append(figure)
            print(f"rep {rep + 1}: {name}: {figure:,.0f} jobs/s", flush=True)
    first = 1e6 / statistics.median(jobs_s[args.variants[0]])
    print(f"variant | jobs/s (median of {args.repeat}) | µs a job | vs {args.variants[0]}")
    for name, figures in jobs_s.items():
        us = 1e6 / statistics.median(figures)
        print(f"{name} | {statistics.median(figures):,.0f} | {us:.1f} | {us - first:+.1f}")


if __name__ == "__main__":
    main()
