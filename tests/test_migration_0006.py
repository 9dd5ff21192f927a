"""0006.fair-claiming over a database full of 0004's jobs and events: everything carries over,
new events sort after the old ones, and the rollback gives 0004's schema back, data kept."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from skiplock import db, events, store

Conn = psycopg.Connection[Any]
LATER = (  # applied after 0006, newest first
    "0010.time-ordered-job-ids",
    "0009.deliveries-without-job-fk",
    "0008.operations",
    "0007.webhooks-schedules",
)

JOB_COLUMNS = (
    "id, company_id, job_type, status, input, result_asset_id, error_message, source_task_id, "
    "priority, run_at, attempts, max_attempts, timeout_seconds, locked_by, lease_expires_at, "
    "progress, idempotency_key, idempotency_request_sha256, started_at, finished_at, "
    "created_at, updated_at"
)


NO_ASSET = (
    "error_messages",
    "run_ats",
    "asset_ids",
    "providers",
    "object_keys",
    "content_types",
    "byte_sizes",
    "sha256s",
    "filenames",
)


def schema_fingerprint(conn: Conn) -> dict[str, set[Any]]:
    """What a migration may change, as sets: columns, indexes, constraints, triggers,
    functions (with their settings) and comments of schema skiplock."""
    queries = {
        "columns": """SELECT table_name, column_name, data_type, column_default, is_nullable
                      FROM information_schema.columns WHERE table_schema = 'skiplock'
                        AND table_name NOT LIKE '%%yoyo%%'""",
        "indexes": """SELECT indexname, indexdef FROM pg_indexes
                      WHERE schemaname = 'skiplock' AND tablename NOT LIKE '%%yoyo%%'""",
        "constraints": """SELECT conname, pg_get_constraintdef(c.oid),
                                 obj_description(c.oid, 'pg_constraint')
                          FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
                          WHERE n.nspname = 'skiplock'
                            AND conrelid::regclass::text NOT LIKE '%%yoyo%%'""",
        "triggers": """SELECT tgname, pg_get_triggerdef(t.oid), obj_description(t.oid, 'pg_trigger')
                       FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                       JOIN pg_namespace n ON n.oid = c.relnamespace
                       WHERE n.nspname = 'skiplock' AND NOT t.tgisinternal""",
        "functions": """SELECT p.proname, pg_get_function_identity_arguments(p.oid), p.prosrc,
                               p.proconfig::text, obj_description(p.oid, 'pg_proc')
                        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                        WHERE n.nspname = 'skiplock'""",
        "comments": """SELECT c.relname, a.attname, col_description(c.oid, a.attnum),
                              obj_description(c.oid, 'pg_class')
                       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
                         AND NOT a.attisdropped
                       WHERE n.nspname = 'skiplock' AND c.relname NOT LIKE '%%yoyo%%'""",
    }
    return {name: set(conn.execute(q).fetchall()) for name, q in queries.items()}


def fill_with_0004_data(conn: Conn) -> dict[str, uuid.UUID]:
    """Jobs of every status, made the way 0004's clients made them, with their events."""
    company = conn.execute("INSERT INTO companies (name) VALUES ('old') RETURNING id").fetchone()
    assert company is not None
    jobs: dict[str, uuid.UUID] = {}

    def add(name: str, **columns: Any) -> uuid.UUID:
        names = ["company_id", "job_type", *columns]
        row = conn.execute(
            f"INSERT INTO content_jobs ({', '.join(names)}) "
            f"VALUES ({', '.join(['%s'] * len(names))}) RETURNING id",
            [company[0], "diagram", *columns.values()],
        ).fetchone()
        assert row is not None
        jobs[name] = row[0]
        return row[0]  # type: ignore[no-any-return]

    add("queued", priority=5, input=Jsonb({"source": "digraph {}"}), source_task_id="t-1")
    add("scheduled", run_at="2999-01-01T00:00:00Z")
    add("keyed", idempotency_key="k1", idempotency_request_sha256="ab" * 32)
    running = add("running")
    conn.execute(
        "UPDATE content_jobs SET status = 'running', locked_by = 'old-worker', attempts = 1, "
        "lease_expires_at = now() + interval '1 hour', started_at = now(), "
        """progress = '{"fraction": 0.5}' WHERE id = %s""",
        (running,),
    )
    for status in ("done", "failed", "canceled"):
        job_id = add(status)
        conn.execute(
            "UPDATE content_jobs SET status = 'running', locked_by = 'w', attempts = 1, "
            "lease_expires_at = now() + interval '1 hour' WHERE id = %s",
            (job_id,),
        )
        conn.execute(
            "UPDATE content_jobs SET status = %s, error_message = %s WHERE id = %s",
            (status, "boom" if status == "failed" else None, job_id),
        )
    asset = uuid.uuid4()
    conn.execute(
        "INSERT INTO assets (id, company_id, object_key, content_type, byte_size, sha256) "
        "VALUES (%s, %s, 'k', 'image/svg+xml', 3, %s)",
        (asset, company[0], "0" * 64),
    )
    conn.execute(
        "UPDATE content_jobs SET result_asset_id = %s WHERE id = %s", (asset, jobs["done"])
    )
    # A retried job: canceled and queued again by hand.
    requeued = add("requeued")
    conn.execute("UPDATE content_jobs SET status = 'canceled' WHERE id = %s", (requeued,))
    conn.execute("UPDATE content_jobs SET status = 'queued' WHERE id = %s", (requeued,))
    return jobs


def snapshot(conn: Conn) -> tuple[list[Any], list[Any]]:
    jobs = conn.execute(f"SELECT {JOB_COLUMNS} FROM content_jobs ORDER BY id").fetchall()
    log = conn.execute(
        "SELECT id, xid::text, company_id, job_id, type, payload, created_at "
        "FROM content_job_events ORDER BY xid, id"
    ).fetchall()
    return jobs, log


async def test_0006_carries_0004_jobs_and_events_over_and_rolls_back(
    database_url: str, conn: Conn, aconn: psycopg.AsyncConnection[Any]
) -> None:
    # Down to the schema before 0006 (the later migrations first, one at a time).
    for later in LATER:
        assert db.migrate(database_url, rollback=True).rolled_back == (later,)
    assert db.migrate(database_url, rollback=True).rolled_back == ("0006.fair-claiming",)
    at_0004 = schema_fingerprint(conn)
    jobs = fill_with_0004_data(conn)
    before = snapshot(conn)
    assert len(before[1]) >= 15

    assert db.migrate(database_url).applied == ("0006.fair-claiming", *reversed(LATER))
    assert snapshot(conn) == before  # every job and event as it was
    companies = conn.execute("SELECT max_running, max_queued FROM companies").fetchall()
    assert companies == [(None, None)]

    # The jobs carried over work with 0006's statements, and their new events sort after
    # their old ones.
    claimed = await store.claim_jobs(
        aconn, worker_id="new-worker", job_types=["diagram"], limit=10, lease_seconds=30
    )
    assert sorted(r["id"] for r in claimed) == sorted(
        [jobs["queued"], jobs["keyed"], jobs["requeued"]]
    )
    assert claimed[0]["id"] == jobs["queued"]  # priority 5 first
    finished = conn.execute(
        store.query("finish_jobs"),
        {
            "worker_id": "old-worker",
            "reason": "",
            "job_ids": [jobs["running"]],
            "attempts": [1],
            "statuses": ["done"],
            "refunds": [False],
            "progress": [Jsonb({"fraction": 1.0})],
            **{name: [None] for name in NO_ASSET},
        },
    ).fetchall()
    assert finished == [(jobs["running"],)]
    conn.execute("UPDATE content_jobs SET status = 'queued' WHERE id = %s", (jobs["canceled"],))
    for name in ("running", "queued", "canceled", "requeued"):
        batch = await events.read_job_events(aconn, jobs[name], events.START)
        old = [e for e in before[1] if e[3] == jobs[name]]
        assert [e.id for e in batch.events[: len(old)]] == [e[0] for e in old]
        assert len(batch.events) > len(old)
        positions = [e.position for e in batch.events]
        assert positions == sorted(positions)
    history = await events.read_job_events(aconn, jobs["running"], events.START)
    types = [e.type for e in history.events]
    assert types[-3:] == ["content_job.running", "content_job.progress", "content_job.done"]

    # Rollback: 0004's schema exactly, and the jobs and events still there.
    after = snapshot(conn)
    for later in LATER:
        assert db.migrate(database_url, rollback=True).rolled_back == (later,)
    assert db.migrate(database_url, rollback=True).rolled_back == ("0006.fair-claiming",)
    assert schema_fingerprint(conn) == at_0004
    assert snapshot(conn) == after
    # 0004's triggers log a change again, behind everything written under 0006.
    conn.execute("UPDATE content_jobs SET status = 'canceled' WHERE id = %s", (jobs["queued"],))
    batch = await events.read_job_events(aconn, jobs["queued"], events.START)
    assert batch.events[-1].type == "content_job.canceled"
    assert [e.position for e in batch.events] == sorted(e.position for e in batch.events)
    assert db.migrate(database_url).applied == ("0006.fair-claiming", *reversed(LATER))
