"""Soak: N minutes of steady submit + drain + purge, recording table and index sizes.

    .venv/bin/python bench/soak/run.py [--minutes 30] [--rate 100] [--retention 5]
        [--sample 30] [--workers 2] [--concurrency 10] [--out bench/soak/last-run.csv]

A throwaway Postgres with default settings (autovacuum included) unless DATABASE_URL names a
server whose role may create databases. Real `skiplock worker` processes run the `soak`
type (bench/soak/soak_handlers.py: a 2 KiB output each, one job in ten fails) with job
retention set to --retention seconds through SKIPLOCK_TEST_JOB_RETENTION_SECONDS, so every
worker's housekeeping purges at start and every minute. Jobs are enqueued in SQL
(enqueue_content_jobs, one batch every 100 ms) at --rate jobs/s.

Every --sample seconds it records, for content_jobs, content_job_events and assets: the
table's and its indexes' size (pg_table_size, pg_indexes_size), live and dead rows
(pg_stat_user_tables), autovacuum runs; and the files in storage. The table is printed as
CSV lines while it runs and written to --out; the question it answers is whether sizes stop
growing under a steady load once retention holds the number of rows steady.
`--report CSV` prints a finished run's CSV as the markdown table of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "service"))
sys.path.insert(0, str(HERE.parent))

from cluster import fresh_database, server  # noqa: E402

TABLES = ("content_jobs", "content_job_events", "assets")
FIELDS = [
    "minute",
    "submitted",
    "backlog",
    "rows_jobs",
    "rows_events",
    "rows_assets",
    *[
        f"{t}_{kind}"
        for t in TABLES
        for kind in ("table_kib", "indexes_kib", "dead", "autovacuums")
    ],
    "files",
    "files_kib",
    "database_kib",
]
SIZES = """
SELECT c.relname,
       pg_table_size(c.oid) / 1024 AS table_kib,
       pg_indexes_size(c.oid) / 1024 AS indexes_kib,
       s.n_live_tup AS live, s.n_dead_tup AS dead,
       s.autovacuum_count AS autovacuums
FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE s.schemaname = 'skiplock' AND c.relname = ANY(%s)
"""


def start_workers(
    url: str, count: int, concurrency: int, retention: int, storage: Path
) -> list[Any]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "SKIPLOCK_LOG_LEVEL": "warning",
        "SKIPLOCK_STORAGE_DIR": str(storage),
        "SKIPLOCK_TEST_JOB_RETENTION_SECONDS": str(retention),
        "PYTHONPATH": str(HERE),
    }
    command = [sys.executable, "-m", "skiplock", "worker", "--handlers", "soak_handlers"]
    command += ["--types", "soak", "--concurrency", str(concurrency)]
    # Failed jobs log a WARNING line each: to a file, not over the samples.
    logs = [(storage.parent / f"worker-{n}.log").open("wb") for n in range(count)]
    return [
        subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        for log in logs
    ]


def sample(
    conn: psycopg.Connection[Any], minute: float, storage: Path, submitted: int
) -> dict[str, Any]:
    row: dict[str, Any] = {"minute": round(minute, 1), "submitted": submitted}
    row["backlog"] = conn.execute(  # queued or running: whether the drain keeps up
        "SELECT count(*) FROM skiplock.content_jobs WHERE status IN ('queued', 'running')"
    ).fetchall()[0][0]
    for name, table_kib, indexes_kib, _live, dead, autovacuums in conn.execute(
        SIZES, (list(TABLES),)
    ):
        row[f"{name}_table_kib"] = table_kib
        row[f"{name}_indexes_kib"] = indexes_kib
        row[f"{name}_dead"] = dead
        row[f"{name}_autovacuums"] = autovacuums
    counts = conn.execute(
        "SELECT (SELECT count(*) FROM skiplock.content_jobs), "
        "(SELECT count(*) FROM skiplock.content_job_events), "
        "(SELECT count(*) FROM skiplock.assets)"
    ).fetchall()[0]
    row["rows_jobs"], row["rows_events"], row["rows_assets"] = counts
    files = [p for p in storage.rglob("*") if p.is_file()]
    row["files"] = len(files)
    row["files_kib"] = sum(p.stat().st_size for p in files) // 1024
    row["database_kib"] = conn.execute(
        "SELECT pg_database_size(current_database()) / 1024"
    ).fetchall()[0][0]
    return row


def soak(url: str, args: argparse.Namespace, out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="skiplock-soak-") as tmp:
        storage = Path(tmp) / "storage"
        workers = start_workers(url, args.workers, args.concurrency, args.retention, storage)
        try:
            run(url, args, storage, out, workers)
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(60)


def run(url: str, args: argparse.Namespace, storage: Path, out: Path, workers: list[Any]) -> None:
    per_tick = max(1, round(args.rate / 10))
    with psycopg.connect(url, autocommit=True) as conn, out.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=FIELDS)
        writer.writeheader()
        company = conn.execute(
            "INSERT INTO skiplock.companies (name) VALUES ('soak') RETURNING id"
        ).fetchall()[0][0]
        inputs = [json.dumps({"fail": n % 10 == 9}) for n in range(per_tick)]
        started = time.monotonic()
        next_tick = next_sample = started
        submitted = 0
        while (now := time.monotonic()) < started + args.minutes * 60:
            if now >= next_sample:
                if any(worker.poll() is not None for worker in workers):
                    raise SystemExit(f"a worker died; see its log in {storage.parent}")
                row = sample(conn, (now - started) / 60, storage, submitted)
                writer.writerow(row)
                file.flush()
                print(",".join(str(row[f]) for f in FIELDS), flush=True)
                next_sample += args.sample
            conn.execute(
                "SELECT skiplock.enqueue_content_jobs(%s, 'soak', %s::jsonb[])",
                (company, inputs),
            )
            submitted += per_tick
            next_tick += 0.1
            time.sleep(max(0.0, next_tick - time.monotonic()))


REPORT_COLUMNS = {
    "minute": "minute",
    "submitted": "submitted",
    "backlog": "queued+running",
    "rows_jobs": "jobs rows",
    "rows_events": "event rows",
    "content_jobs_table_kib": "content_jobs KiB",
    "content_jobs_indexes_kib": "its indexes KiB",
    "content_job_events_table_kib": "content_job_events KiB",
    "content_job_events_indexes_kib": "its indexes KiB",
    "assets_table_kib": "assets KiB",
    "assets_indexes_kib": "its indexes KiB",
    "files": "files",
    "database_kib": "database KiB",
}


def report(path: Path, every: float) -> None:
    """A markdown table of a finished run's CSV: a row every `every` minutes, and the last."""
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    print("| " + " | ".join(REPORT_COLUMNS.values()) + " |")
    print("|" + "---|" * len(REPORT_COLUMNS))
    next_minute = 0.0
    for n, row in enumerate(rows):
        if float(row["minute"]) + 1e-6 >= next_minute or n == len(rows) - 1:
            print(
                "| "
                + " | ".join(
                    f"{int(float(row[c])):,}" if c != "minute" else row[c] for c in REPORT_COLUMNS
                )
                + " |"
            )
            next_minute = float(row["minute"]) + every


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=100, help="jobs/s (default 100)")
    parser.add_argument("--retention", type=int, default=5, help="job retention, seconds")
    parser.add_argument("--sample", type=float, default=30, help="seconds between samples")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--out", type=Path, default=HERE / "last-run.csv")
    parser.add_argument(
        "--report", type=Path, metavar="CSV", help="print a finished run's CSV as markdown"
    )
    args = parser.parse_args()
    if args.report:
        report(args.report, every=5)
        return
    print(",".join(FIELDS), flush=True)
    with server() as server_url, fresh_database(server_url) as url:
        soak(url, args, args.out)


if __name__ == "__main__":
    main()
