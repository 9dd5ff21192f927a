"""The raw Postgres ceiling for a job queue's write pattern, measured with pgbench.

    DATABASE_URL=postgresql://…/db .venv/bin/python bench/ceiling/ceiling.py [seconds]

Needs a migrated, disposable database (skiplock migrate): each case recreates the minimal
tables of setup.sql and empties skiplock's job tables. pgbench runs `-n -M prepared`.

- INSERT cases (plain, + NOTIFY, + an event-log row, skiplock's enqueue_content_job()) at
  1 and 8 connections for `seconds` (-T).
- claim+complete cases, on the minimal table (setup.sql) and on skiplock's schema (with the
  worker's claim_content_jobs() and finish_content_jobs()), 100 rows or 1 row per claim, 1
  and 2 connections, with and without the event log (the minimal table's trigger; on
  skiplock's schema its triggers off and the two functions without their event rows). They
  need rows to claim: the table is filled first (triggers off, then ANALYZE) and pgbench
  runs a fixed number of transactions per client (-t) sized to about `seconds`, so the
  queue never runs dry. jobs/s = transactions/s x rows per claim.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "service"))
sys.path.insert(0, str(HERE.parent))

from cluster import skiplock_functions  # noqa: E402  (bench/cluster.py)

from skiplock.embedded.binaries import find_postgres_bindir  # noqa: E402

# Rough transactions/s of a claim case (all its connections together: on 2 cores a second
# connection adds little), only to size -t so that a case takes about `seconds`.
EXPECTED_TPS = {1: 1500, 100: 200}


@dataclass(frozen=True)
class Case:
    label: str
    script: str
    clients: int
    batch: int = 0  # rows per claim; 0 for an INSERT case
    schema: str = ""  # claim cases: "minimal" or "skiplock"
    triggers: bool = True

    @property
    def key(self) -> str:
        return f"{self.label} | {self.clients}"


def _cases() -> list[Case]:
    inserts = [
        ("INSERT, plain", "insert_plain.sql"),
        ("INSERT + NOTIFY", "insert_notify.sql"),
        ("INSERT + event-log row", "insert_log.sql"),
        ("skiplock enqueue_content_job()", "skiplock_enqueue.sql"),
    ]
    cases = [Case(label, script, c) for c in (1, 8) for label, script in inserts]
    for schema, script, trigger in (
        ("minimal", "minimal_claim_complete.sql", "event trigger"),
        ("skiplock", "skiplock_claim_complete.sql", "skiplock's event log"),
    ):
        for batch in (100, 1):
            for triggers in (True, False):
                label = (
                    f"{schema}: claim {batch} + complete, {trigger} {'on' if triggers else 'off'}"
                )
                for clients in (1, 2):
                    cases.append(Case(label, script, clients, batch, schema, triggers))
    return cases


CASES = _cases()


def pgbench() -> str:
    """pgbench beside the server binaries skiplock would use, else the one on PATH."""
    candidate = find_postgres_bindir() / "pgbench"
    return str(candidate) if candidate.exists() else shutil.which("pgbench") or "pgbench"


def prepare(url: str, case: Case, seconds: float) -> str:
    """Reset the tables this case uses and fill a claim case's queue; the company id."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute((HERE / "setup.sql").read_text())
        conn.execute("TRUNCATE skiplock.content_jobs, skiplock.content_job_events CASCADE")
        company = conn.execute(
            "INSERT INTO skiplock.companies (name) VALUES ('ceiling') RETURNING id"
        ).fetchone()
        assert company is not None  # noqa: S101  (INSERT … RETURNING always returns a row)
        if case.batch:
            fill(conn, case, company[0], seconds)
    return str(company[0])


def rounds(case: Case, seconds: float) -> int:
    """Transactions per client (-t)."""
    return max(10, round(seconds * EXPECTED_TPS[case.batch] / case.clients))


def fill(conn: psycopg.Connection[Any], case: Case, company: str, seconds: float) -> None:
    """Enough queued rows for every client's transactions, plus a margin, then ANALYZE."""
    rows = (rounds(case, seconds) + 10) * case.batch * case.clients
    if case.schema == "minimal":
        table = "bench_queue"
        conn.execute(
            "INSERT INTO bench_queue (status, payload) "
            "SELECT 'queued', '{}' FROM generate_series(1, %s)",
            (rows,),
        )
    else:
        # The event log off while filling (the claim cases measure claims, not inserts);
        # the FK triggers are internal and stay on.
        table = "skiplock.content_jobs"
        conn.execute("ALTER TABLE skiplock.content_jobs DISABLE TRIGGER USER")
        conn.execute(
            "INSERT INTO skiplock.content_jobs (id, company_id, job_type) "
            "SELECT skiplock.new_job_id(), %s, 'noop' FROM generate_series(1, %s)",
            (company, rows),
        )
        conn.execute("ALTER TABLE skiplock.content_jobs ENABLE TRIGGER USER")
        conn.execute(skiplock_functions(events=case.triggers))
    if not case.triggers:
        conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
    conn.execute(f"ANALYZE {table}")


def run_case(url: str, case: Case, seconds: float) -> dict[str, float]:
    """One case on a migrated database: {"tx_s": …, "jobs_s": …}."""
    company = prepare(url, case, seconds)
    command = [pgbench(), "-n", "-M", "prepared", "-c", str(case.clients)]
    command += ["-j", str(case.clients), "-f", str(HERE / case.script)]
    if case.batch:
        command += ["-t", str(rounds(case, seconds)), "-D", f"batch={case.batch}"]
    else:
        command += ["-T", str(max(1, round(seconds))), "-D", f"company={company}"]
    done = subprocess.run(  # noqa: S603  (pgbench, fixed arguments)
        [*command, url], capture_output=True, text=True, check=False
    )
    match = re.search(r"^tps = ([0-9.]+)", done.stdout, re.MULTILINE)
    if done.returncode != 0 or not match:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"pgbench exited {done.returncode}")
    tps = float(match.group(1))
    return {"tx_s": tps, "jobs_s": tps * max(1, case.batch)}


def measure(url: str, seconds: float) -> dict[str, dict[str, float]]:
    """Every case, one after another, on one migrated database."""
    return {case.key: run_case(url, case, seconds) for case in CASES}


def main() -> None:
    url = os.environ.get("DATABASE_URL")
    if not url:
        sys.exit("set DATABASE_URL to a migrated, disposable database")
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    print("case | clients | tx/s | jobs/s")
    for case in CASES:
        figures = run_case(url, case, seconds)
        print(f"{case.label} | {case.clients} | {figures['tx_s']:,.0f} | {figures['jobs_s']:,.0f}")


if __name__ == "__main__":
    main()
