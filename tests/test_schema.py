"""The migrated schema matches SPEC §2: tables, columns, checks, indexes, view, function."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from plans import index_rows_read, nested_plans, seq_scanned
from skiplock import store

Conn = psycopg.Connection[Any]
# Tables of a handful of rows, read whole on the hot path where that is the cheapest plan:
# what is paused, whether any webhook exists (the outbox trigger), the uploads in flight.
TINY_TABLES = {"paused_job_types", "webhooks", "asset_uploads"}

SPEC_COLUMNS = {
    "companies": {"id", "name", "created_at", "max_running", "max_queued"},
    "api_keys": {"id", "company_id", "key_hash", "created_at", "revoked_at"},
    "content_jobs": {
        "id",
        "company_id",
        "job_type",
        "status",
        "input",
        "result_asset_id",
        "error_message",
        "source_task_id",
        "started_at",
        "finished_at",
        "created_at",
        "updated_at",
        "priority",
        "run_at",
        "attempts",
        "max_attempts",
        "timeout_seconds",
        "locked_by",
        "lease_expires_at",
        "progress",
        "idempotency_key",
        "idempotency_request_sha256",
    },
    "assets": {
        "id",
        "company_id",
        "provider",
        "object_key",
        "content_type",
        "byte_size",
        "sha256",
        "original_filename",
        "created_by_agent_id",
        "created_by_user_id",
        "source_task_id",
        "created_at",
        "updated_at",
    },
    "content_job_events": {"id", "xid", "company_id", "job_id", "type", "payload", "created_at"},
    "workers": {"id", "hostname", "pid", "job_types", "concurrency", "started_at", "last_seen_at"},
}


def columns(conn: Conn, table: str) -> dict[str, tuple[str, str | None, str]]:
    rows = conn.execute(
        """SELECT column_name, data_type, column_default, is_nullable
           FROM information_schema.columns
           WHERE table_schema = 'skiplock' AND table_name = %s""",
        (table,),
    ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


@pytest.mark.parametrize("table", sorted(SPEC_COLUMNS))
def test_table_has_the_spec_columns_and_comments(conn: Conn, table: str) -> None:
    assert SPEC_COLUMNS[table] <= set(columns(conn, table))
    comment = conn.execute(
        "SELECT obj_description(%s::regclass, 'pg_class')", (f"skiplock.{table}",)
    ).fetchone()
    assert comment is not None and comment[0], f"{table} has no COMMENT"


def test_every_table_and_wondered_about_column_is_commented(conn: Conn) -> None:
    uncommented_tables = conn.execute(
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'skiplock' AND c.relkind IN ('r', 'v')
             AND c.relname NOT LIKE '%%yoyo%%'
             AND obj_description(c.oid, 'pg_class') IS NULL"""
    ).fetchall()
    assert uncommented_tables == []
    for column in (
        "status",
        "priority",
        "run_at",
        "attempts",
        "locked_by",
        "lease_expires_at",
        "progress",
        "idempotency_key",
        "idempotency_request_sha256",
    ):
        row = conn.execute(
            "SELECT col_description('skiplock.content_jobs'::regclass, attnum) "
            "FROM pg_attribute WHERE attrelid = 'skiplock.content_jobs'::regclass "
            "AND attname = %s",
            (column,),
        ).fetchone()
        assert row is not None and row[0], f"content_jobs.{column} has no COMMENT"
    for function in ("enqueue_content_job", "content_jobs_log_insert", "content_jobs_log_update"):
        row = conn.execute(
            "SELECT obj_description(p.oid, 'pg_proc') FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'skiplock' AND p.proname = %s",
            (function,),
        ).fetchone()
        assert row is not None and row[0], f"{function} has no COMMENT"


def test_content_jobs_column_types_and_defaults(conn: Conn) -> None:
    cols = columns(conn, "content_jobs")
    assert cols["id"][0] == "uuid" and "gen_random_uuid()" in (cols["id"][1] or "")
    assert cols["input"][0] == "jsonb" and cols["input"][1] is not None
    assert cols["priority"][0] == "integer" and cols["priority"][1] == "0"
    assert cols["max_attempts"][1] == "3"
    assert cols["run_at"][0] == "timestamp with time zone" and cols["run_at"][1] == "now()"
    assert cols["result_asset_id"][2] == "YES" and cols["source_task_id"][2] == "YES"
    assert columns(conn, "content_job_events")["xid"][0] == "xid8"
    assert columns(conn, "assets")["byte_size"][0] == "bigint"


@pytest.mark.parametrize(
    ("assignment", "constraint"),
    [
        ("status = 'sleeping'", "status_is_known"),
        ("priority = 100000", "priority_in_range"),
        ("max_attempts = 0", "max_attempts_in_range"),
        ("input = '[1]'", "input_is_object"),
        ("status = 'running'", "running_has_lease"),
    ],
)
def test_checks_refuse_bad_rows(
    conn: Conn, company_id: uuid.UUID, assignment: str, constraint: str
) -> None:
    conn.execute("INSERT INTO content_jobs (company_id, job_type) VALUES (%s, 'x')", (company_id,))
    with pytest.raises(psycopg.errors.CheckViolation) as caught:
        conn.execute(f"UPDATE content_jobs SET {assignment}")
    assert caught.value.diag.constraint_name == constraint


def test_a_hand_made_running_is_refused_with_the_reason_and_the_fix(
    conn: Conn, company_id: uuid.UUID
) -> None:
    conn.execute("INSERT INTO content_jobs (company_id, job_type) VALUES (%s, 'x')", (company_id,))
    with pytest.raises(psycopg.errors.CheckViolation) as caught:
        conn.execute("UPDATE content_jobs SET status = 'running'")
    diag = caught.value.diag
    assert diag.constraint_name == "running_has_lease"
    assert "without a lease" in (diag.message_primary or "")
    assert "locked_by and lease_expires_at" in (diag.message_hint or "")
    comment = conn.execute(
        "SELECT obj_description(oid, 'pg_constraint') FROM pg_constraint "
        "WHERE conname = 'running_has_lease'"
    ).fetchone()
    assert comment is not None and "rescue" in comment[0]
    # With a lease, a person may set it running by hand.
    conn.execute(
        "UPDATE content_jobs SET status = 'running', locked_by = 'psql', "
        "lease_expires_at = now() + interval '1 minute'"
    )


def test_idempotency_key_is_unique_per_company(conn: Conn, company_id: uuid.UUID) -> None:
    other = conn.execute("INSERT INTO companies (name) VALUES ('b') RETURNING id").fetchone()
    assert other is not None
    insert = (
        "INSERT INTO content_jobs (company_id, job_type, idempotency_key) VALUES (%s, 'x', 'k')"
    )
    conn.execute(insert, (company_id,))
    conn.execute(insert, (other[0],))  # another company may use the same key
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(insert, (company_id,))


def test_spec_indexes_exist(conn: Conn) -> None:
    rows = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'skiplock'"
        " AND tablename = 'content_jobs'"
    ).fetchall()
    defs = dict(rows)
    assert "(company_id, status)" in defs["content_jobs_company_status_idx"]
    assert "(company_id, created_at" in defs["content_jobs_company_created_idx"]
    assert "WHERE (status = 'queued'::text)" in defs["content_jobs_claim_idx"]
    source_idx = conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'skiplock' "
        "AND tablename = 'assets' AND indexdef LIKE '%%source_task_id%%'"
    ).fetchone()
    assert source_idx is not None


def test_everything_lives_in_the_skiplock_schema(conn: Conn) -> None:
    stray = conn.execute(
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public'"""
    ).fetchall()
    assert stray == []
    yoyo = conn.execute(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'skiplock' AND tablename LIKE '%%yoyo%%'"
    ).fetchone()
    assert yoyo is not None and yoyo[0] >= 2


def test_content_job_stats_counts_per_company_type_and_status(
    conn: Conn, company_id: uuid.UUID
) -> None:
    other = conn.execute("INSERT INTO companies (name) VALUES ('b') RETURNING id").fetchone()
    assert other is not None
    conn.execute(
        """INSERT INTO content_jobs (company_id, job_type, created_at)
                    SELECT %s, t, '2026-01-01'::timestamptz + make_interval(mins => g)
                    FROM generate_series(1, 3) g, unnest(ARRAY['diagram', 'video']) t""",
        (company_id,),
    )
    conn.execute(
        "INSERT INTO content_jobs (company_id, job_type) VALUES (%s, 'diagram')", (other[0],)
    )
    conn.execute(
        """UPDATE content_jobs SET status = 'canceled'
                    WHERE company_id = %s AND job_type = 'video'
                      AND created_at = '2026-01-01 00:01+00'""",
        (company_id,),
    )
    rows = conn.execute(
        """SELECT job_type, status, count, oldest_created_at
                           FROM content_job_stats WHERE company_id = %s
                           ORDER BY job_type, status""",
        (company_id,),
    ).fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("diagram", "queued", 3),
        ("video", "canceled", 1),
        ("video", "queued", 2),
    ]
    assert rows[0][3].isoformat() == "2026-01-01T00:01:00+00:00"
    assert rows[2][3].isoformat() == "2026-01-01T00:02:00+00:00"


def test_claim_query_is_an_index_scan_with_100k_finished_jobs(
    conn: Conn, company_id: uuid.UUID
) -> None:
    conn.execute("ALTER TABLE content_jobs DISABLE TRIGGER USER")  # bulk load, no event log
    conn.execute(
        """INSERT INTO content_jobs (company_id, job_type, status, finished_at)
                    SELECT %s, 'diagram', 'done', now() FROM generate_series(1, 100000)""",
        (company_id,),
    )
    conn.execute("ALTER TABLE content_jobs ENABLE TRIGGER USER")
    conn.execute(
        """INSERT INTO content_jobs (company_id, job_type)
                    SELECT %s, 'diagram' FROM generate_series(1, 5)""",
        (company_id,),
    )
    conn.execute("ANALYZE content_jobs")
    params = {
        "worker_id": "w",
        "job_types": ["diagram"],
        "limit": 10,
        "lease_seconds": 30,
        "after": None,
    }
    plans = nested_plans(conn, "claim_jobs", params)
    assert "content_jobs_claim_idx" in json.dumps(plans)
    # paused_job_types is a handful of rows: scanning it whole is the cheapest plan.
    assert seq_scanned(plans) <= TINY_TABLES


def test_claim_with_200_companies_and_100k_finished_jobs_walks_indexes_and_takes_turns(
    conn: Conn, company_id: uuid.UUID
) -> None:
    conn.execute("ALTER TABLE content_jobs DISABLE TRIGGER USER")  # bulk load, no event log
    conn.execute(
        """INSERT INTO content_jobs (company_id, job_type, status, finished_at)
                    SELECT %s, 'diagram', 'done', now() FROM generate_series(1, 100000)""",
        (company_id,),
    )
    conn.execute("ALTER TABLE content_jobs ENABLE TRIGGER USER")
    conn.execute("INSERT INTO companies (name) SELECT 'c' || g FROM generate_series(1, 199) AS g")
    conn.execute(
        """INSERT INTO content_jobs (company_id, job_type)
                    SELECT c.id, 'diagram' FROM companies c, generate_series(1, 5)"""
    )
    conn.execute("ANALYZE content_jobs")
    params = {"worker_id": "w", "job_types": ["diagram"], "lease_seconds": 30}
    plans = nested_plans(conn, "claim_jobs", {**params, "limit": 100, "after": None}, analyze=True)
    assert seq_scanned(plans) <= TINY_TABLES
    # Each company's next job: one probe of its pair and one of its jobs, not its backlog.
    read = index_rows_read(plans, "content_jobs_claim_idx")
    walked = index_rows_read(plans, "content_jobs_due_idx")
    assert read <= 100 and walked <= 2 * 110, (read, walked)
    first = conn.execute(
        "SELECT DISTINCT company_id FROM content_jobs WHERE status = 'running'"
    ).fetchall()
    assert len(first) == 100  # a turn each for the first 100 companies
    # The next claim goes on after the company the first ended on: the other 100.
    last = conn.execute(
        "SELECT company_id FROM content_jobs WHERE status = 'running' "
        "ORDER BY company_id DESC LIMIT 1"
    ).fetchone()
    assert last is not None
    rows = conn.execute(
        store.query("claim_jobs"), {**params, "limit": 100, "after": last[0]}
    ).fetchall()
    assert len({row[1] for row in rows}) == 100
    assert not {row[1] for row in rows} & {company for (company,) in first}


def test_claim_keeps_its_plan_with_statistics_taken_before_the_backlog_was_due(
    conn: Conn, company_id: uuid.UUID
) -> None:
    """ANALYZE while a backlog was still scheduled says no job is due: the planner then
    preferred to read and sort the company's whole queue by another index on every claim
    (19 ms instead of 0.3 for 20,000 jobs). The claim function's settings keep the walk."""
    conn.execute(
        "INSERT INTO content_jobs (company_id, job_type, run_at) "
        "SELECT %s, 'diagram', 'infinity' FROM generate_series(1, 20000)",
        (company_id,),
    )
    conn.execute("ANALYZE content_jobs")
    conn.execute("UPDATE content_jobs SET run_at = now()")
    params = {"worker_id": "w", "job_types": ["diagram"], "limit": 100, "lease_seconds": 30}
    plans = nested_plans(conn, "claim_jobs", {**params, "after": None}, analyze=True)
    assert seq_scanned(plans) <= TINY_TABLES
    read = index_rows_read(plans, "content_jobs_claim_idx") + index_rows_read(
        plans, "content_jobs_due_idx"
    )
    assert read < 500, f"the claim read {read} index entries for 100 jobs"


@pytest.mark.parametrize("name", ["finish_jobs", "renew_leases", "write_progress"])
def test_statements_on_held_jobs_find_them_by_id_with_stale_statistics(
    conn: Conn, company_id: uuid.UUID, name: str
) -> None:
    """Statistics taken while no job ran once made finish_jobs walk every running job
    through the lease index and join each one against the whole batch: quadratic in the
    batch (48 ms instead of 19 for 500 jobs). Each statement must look its jobs up by id."""
    conn.execute("ALTER TABLE content_jobs DISABLE TRIGGER USER")  # bulk load, no event log
    conn.execute(
        "INSERT INTO content_jobs (company_id, job_type, status, finished_at) "
        "SELECT %s, 'diagram', 'done', now() FROM generate_series(1, 50000)",
        (company_id,),
    )
    conn.execute("ALTER TABLE content_jobs ENABLE TRIGGER USER")
    conn.execute(
        "INSERT INTO content_jobs (company_id, job_type) "
        "SELECT %s, 'diagram' FROM generate_series(1, 300)",
        (company_id,),
    )
    conn.execute("ANALYZE content_jobs")  # no job running yet
    claim = {
        "worker_id": "w",
        "job_types": ["diagram"],
        "limit": 300,
        "lease_seconds": 30,
        "after": None,
    }
    rows = conn.execute(store.query("claim_jobs"), claim).fetchall()
    ids = [row[0] for row in rows]
    empty: list[None] = [None] * len(ids)
    params = {
        "worker_id": "w",
        "reason": "",
        "job_ids": ids,
        "attempts": [1] * len(ids),
        "statuses": ["done"] * len(ids),
        "refunds": [False] * len(ids),
        "lease_seconds": 30,
        **dict.fromkeys(
            ["error_messages", "run_ats", "asset_ids", "providers", "object_keys"], empty
        ),
        **dict.fromkeys(["content_types", "byte_sizes", "sha256s", "filenames"], empty),
        "progress": [Jsonb({"step": 1})] * len(ids),
    }
    if name == "finish_jobs":  # a function: its statement's plan comes from auto_explain
        plans: Any = nested_plans(conn, name, params)
    else:
        plan = conn.execute(f"EXPLAIN (FORMAT JSON) {store.query(name)}", params).fetchone()
        assert plan is not None
        plans = plan[0]
    text = json.dumps(plans)
    assert "content_jobs_pkey" in text
    assert seq_scanned(plans) <= TINY_TABLES
    assert "content_jobs_lease_idx" not in text
    assert "content_jobs_company_status_idx" not in text


def test_reading_new_events_does_not_scan_the_whole_log(conn: Conn, company_id: uuid.UUID) -> None:
    """The notifier reads on every doorbell: with 200,000 old events it must stay an index
    walk (it once scanned the whole log per returned row to compute `pending`)."""
    conn.execute(
        "INSERT INTO content_job_events (xid, company_id, job_id, type) "
        "SELECT pg_current_xact_id(), %s, gen_random_uuid(), 'content_job.queued' "
        "FROM generate_series(1, 200000)",
        (company_id,),
    )
    conn.execute("ANALYZE content_job_events")
    tip = conn.execute("SELECT xid::text, id FROM content_job_events ORDER BY id DESC LIMIT 1")
    xid, last = tip.fetchone() or ("0", 0)
    params = {"after_xid": xid, "after_id": last - 10, "limit": 1000}
    plan = conn.execute(
        f"EXPLAIN (FORMAT JSON) {store.query('read_all_events_after')}", params
    ).fetchone()
    assert plan is not None
    assert '"Seq Scan"' not in json.dumps(plan[0])


def test_enqueue_function_signature_defaults(conn: Conn, company_id: uuid.UUID) -> None:
    row = conn.execute("SELECT enqueue_content_job(%s, 'diagram')", (company_id,)).fetchone()
    assert row is not None
    job = conn.execute(
        "SELECT input, priority, max_attempts, attempts, status, run_at <= now() "
        "FROM content_jobs WHERE id = %s",
        (row[0],),
    ).fetchone()
    assert job == ({}, 0, 3, 0, "queued", True)


def test_every_named_query_is_used_by_the_service() -> None:
    from pathlib import Path

    service = Path(__file__).resolve().parent.parent / "service" / "skiplock"
    code = "\n".join(p.read_text() for p in service.rglob("*.py"))
    unused = [
        name
        for name in store.query_names()
        if f'"{name}"' not in code and f"store.{name}(" not in code and f"def {name}(" not in code
    ]
    assert unused == []


def test_enqueue_many_in_one_statement(conn: Conn, company_id: uuid.UUID) -> None:
    conn.execute("LISTEN content_job_events")
    conn.execute("LISTEN content_jobs_queued")
    rows = conn.execute(
        "SELECT * FROM enqueue_content_jobs(%s, 'diagram', %s::jsonb[], %s::text[])",
        (company_id, ['{"n": 1}', '{"n": 2}', "{}"], ["a", None, "c"]),
    ).fetchall()
    ids = [r[0] for r in rows]
    jobs = conn.execute(
        "SELECT id, input, source_task_id FROM content_jobs ORDER BY created_at, input->>'n'"
    ).fetchall()
    by_id = {j[0]: j[1:] for j in jobs}
    assert [by_id[i] for i in ids] == [({"n": 1}, "a"), ({"n": 2}, None), ({}, "c")]
    assert conn.execute("SELECT count(*) FROM content_job_events").fetchone() == (3,)
    heard = list(conn.notifies(timeout=0.5))
    assert sorted(n.channel for n in heard) == ["content_job_events", "content_jobs_queued"]
    # Without source task ids; an empty batch inserts and rings nothing.
    five = conn.execute(
        "SELECT enqueue_content_jobs(%s, 'diagram', %s::jsonb[])", (company_id, ["{}"] * 5)
    )
    assert len(five.fetchall()) == 5
    assert len(list(conn.notifies(timeout=0.5, stop_after=2))) == 2
    empty = conn.execute("SELECT enqueue_content_jobs(%s, 'diagram', '{}'::jsonb[])", (company_id,))
    assert empty.fetchall() == []
    assert list(conn.notifies(timeout=0.3)) == []
