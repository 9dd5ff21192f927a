"""The trigger-written event log and its doorbells, seen from a raw LISTEN connection."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg

Conn = psycopg.Connection[Any]


def listener_for(database_url: str, *channels: str) -> Conn:
    listener = psycopg.connect(database_url, autocommit=True)
    for channel in channels:
        listener.execute(f"LISTEN {channel}")
    return listener


def heard(listener: Conn, timeout: float = 0.3) -> list[tuple[str, str]]:
    return [(n.channel, n.payload) for n in listener.notifies(timeout=timeout)]


def doorbell(company_id: uuid.UUID) -> tuple[str, str]:
    return ("content_job_events", json.dumps({"companyId": str(company_id)}))


def insert_job(conn: Conn, company_id: uuid.UUID, job_type: str = "diagram") -> uuid.UUID:
    row = conn.execute(
        "INSERT INTO skiplock.content_jobs (company_id, job_type) VALUES (%s, %s) RETURNING id",
        (company_id, job_type),
    ).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def events_of(conn: Conn, job_id: uuid.UUID) -> list[tuple[str, dict[str, Any]]]:
    rows = conn.execute(
        "SELECT type, payload FROM content_job_events WHERE job_id = %s ORDER BY xid, id",
        (job_id,),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def normalise(payloads: list[tuple[str, str]]) -> list[tuple[str, Any]]:
    return [(ch, json.loads(p) if ch == "content_job_events" else p) for ch, p in payloads]


def test_insert_notifies_company_and_queued_type(
    database_url: str, conn: Conn, company_id: uuid.UUID
) -> None:
    with listener_for(database_url, "content_job_events", "content_jobs_queued") as listener:
        job_id = insert_job(conn, company_id, "diagram")
        assert normalise(heard(listener)) == [
            ("content_job_events", {"companyId": str(company_id)}),
            ("content_jobs_queued", "diagram"),
        ]
    assert events_of(conn, job_id) == [
        ("content_job.queued", {"status": "queued", "jobType": "diagram"})
    ]


def test_status_change_by_hand_notifies_and_logs_manual_reason(
    database_url: str, conn: Conn, company_id: uuid.UUID
) -> None:
    job_id = insert_job(conn, company_id)
    conn.execute("UPDATE content_jobs SET status = 'canceled' WHERE id = %s", (job_id,))
    conn.execute("UPDATE content_jobs SET status = 'queued' WHERE id = %s", (job_id,))
    with listener_for(database_url, "content_job_events") as listener:
        conn.execute(
            "UPDATE content_jobs SET status = 'failed', error_message = 'boom' WHERE id = %s",
            (job_id,),
        )
        assert heard(listener) == [doorbell(company_id)]
    types = [(t, p) for t, p in events_of(conn, job_id)]
    assert [t for t, _ in types] == [
        "content_job.queued",
        "content_job.canceled",
        "content_job.queued",
        "content_job.failed",
    ]
    requeued = types[2][1]
    assert requeued["reason"] == "manual" and requeued["attempt"] == 0
    assert requeued["retryAt"].endswith("Z")
    assert types[3][1] == {"status": "failed", "errorMessage": "boom"}
    finished = conn.execute(
        "SELECT finished_at IS NOT NULL FROM content_jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert finished == (True,)


def test_progress_change_notifies(database_url: str, conn: Conn, company_id: uuid.UUID) -> None:
    job_id = insert_job(conn, company_id)
    with listener_for(database_url, "content_job_events") as listener:
        conn.execute(
            """UPDATE content_jobs SET progress = '{"fraction": 0.4, "message": "hi"}'
                        WHERE id = %s""",
            (job_id,),
        )
        assert heard(listener) == [doorbell(company_id)]
        # The same value again is no change: no event, no doorbell.
        conn.execute(
            """UPDATE content_jobs SET progress = '{"fraction": 0.4, "message": "hi"}'
                        WHERE id = %s""",
            (job_id,),
        )
        assert heard(listener) == []
    assert events_of(conn, job_id)[-1] == (
        "content_job.progress",
        {"status": "queued", "progress": {"fraction": 0.4, "message": "hi"}},
    )


def test_progress_written_with_completion_is_its_own_event_before_the_terminal_one(
    conn: Conn, company_id: uuid.UUID
) -> None:
    job_id = insert_job(conn, company_id)
    conn.execute(
        """UPDATE content_jobs SET status = 'running', locked_by = 'w',
                    lease_expires_at = now() + interval '30 seconds', attempts = 1
                    WHERE id = %s""",
        (job_id,),
    )
    conn.execute(
        """UPDATE content_jobs SET status = 'done', progress = '{"fraction": 1}'
                    WHERE id = %s""",
        (job_id,),
    )
    assert [t for t, _ in events_of(conn, job_id)] == [
        "content_job.queued",
        "content_job.running",
        "content_job.progress",
        "content_job.done",
    ]


def test_uncommitted_change_is_not_heard_and_rollback_is_never_heard(
    database_url: str, company_id: uuid.UUID
) -> None:
    with (
        listener_for(database_url, "content_job_events", "content_jobs_queued") as listener,
        psycopg.connect(database_url) as writer,
    ):
        insert_job(writer, company_id)
        assert heard(listener) == []  # not yet committed
        writer.commit()
        assert len(heard(listener)) == 2  # doorbell + queued, at commit

        insert_job(writer, company_id)
        writer.rollback()
        assert heard(listener, timeout=0.5) == []


def test_update_of_1000_jobs_is_one_notification_and_1000_events(
    database_url: str, conn: Conn, company_id: uuid.UUID
) -> None:
    conn.execute(
        """INSERT INTO content_jobs (company_id, job_type)
                    SELECT %s, 'bulk' FROM generate_series(1, 1000)""",
        (company_id,),
    )
    before = conn.execute("SELECT count(*) FROM content_job_events").fetchone()
    with listener_for(database_url, "content_job_events", "content_jobs_queued") as listener:
        conn.execute("UPDATE content_jobs SET status = 'canceled' WHERE job_type = 'bulk'")
        assert heard(listener, timeout=0.5) == [doorbell(company_id)]
    after = conn.execute("SELECT count(*) FROM content_job_events").fetchone()
    assert before is not None and after is not None
    assert after[0] - before[0] == 1000


def test_one_transaction_rings_each_company_once(database_url: str, company_id: uuid.UUID) -> None:
    with (
        listener_for(database_url, "content_job_events") as listener,
        psycopg.connect(database_url) as writer,
    ):
        other = writer.execute(
            "INSERT INTO skiplock.companies (name) VALUES ('other') RETURNING id"
        ).fetchone()
        assert other is not None
        for _ in range(5):
            insert_job(writer, company_id)
            insert_job(writer, other[0])
        writer.commit()
        assert sorted(heard(listener)) == sorted([doorbell(company_id), doorbell(other[0])])


def test_statement_that_changes_nothing_notifies_nothing(
    database_url: str, conn: Conn, company_id: uuid.UUID
) -> None:
    job_id = insert_job(conn, company_id)
    with listener_for(database_url, "content_job_events", "content_jobs_queued") as listener:
        conn.execute("UPDATE content_jobs SET status = 'done' WHERE id = %s AND false", (job_id,))
        conn.execute("UPDATE content_jobs SET priority = 5 WHERE id = %s", (job_id,))
        assert heard(listener) == []


def test_making_a_scheduled_job_due_rings_queued(
    database_url: str, conn: Conn, company_id: uuid.UUID
) -> None:
    with listener_for(database_url, "content_jobs_queued") as listener:
        conn.execute(
            """INSERT INTO content_jobs (company_id, job_type, run_at)
                        VALUES (%s, 'later', now() + interval '1 hour')""",
            (company_id,),
        )
        assert heard(listener) == []  # not claimable yet: workers find it by its run_at
        conn.execute("UPDATE content_jobs SET run_at = now() WHERE job_type = 'later'")
        assert heard(listener) == [("content_jobs_queued", "later")]


def test_enqueue_function_is_visible_and_heard_only_after_commit(
    database_url: str, company_id: uuid.UUID
) -> None:
    with (
        listener_for(database_url, "content_jobs_queued") as listener,
        psycopg.connect(database_url) as writer,
        psycopg.connect(database_url, autocommit=True) as reader,
    ):
        row = writer.execute(
            "SELECT skiplock.enqueue_content_job(%s, 'diagram', '{\"source\": \"digraph{}\"}', "
            "'task-1', 5)",
            (company_id,),
        ).fetchone()
        assert row is not None
        job_id = row[0]
        assert reader.execute(
            "SELECT count(*) FROM skiplock.content_jobs WHERE id = %s", (job_id,)
        ).fetchone() == (0,)
        assert heard(listener) == []
        writer.commit()
        assert heard(listener) == [("content_jobs_queued", "diagram")]
        job = reader.execute(
            """SELECT job_type, input, source_task_id, priority, status
                                FROM skiplock.content_jobs WHERE id = %s""",
            (job_id,),
        ).fetchone()
        assert job == ("diagram", {"source": "digraph{}"}, "task-1", 5, "queued")


def test_requeue_reason_comes_from_the_transaction_setting(
    conn: Conn, company_id: uuid.UUID
) -> None:
    job_id = insert_job(conn, company_id)
    conn.execute(
        """UPDATE content_jobs SET status = 'running', locked_by = 'w', attempts = 1,
                    lease_expires_at = now() + interval '30 seconds' WHERE id = %s""",
        (job_id,),
    )
    with conn.transaction():
        conn.execute("SELECT set_config('skiplock.change_reason', 'error', true)")
        conn.execute("UPDATE content_jobs SET status = 'queued' WHERE id = %s", (job_id,))
        # The trigger consumed the reason: a later change in the same transaction is manual.
        conn.execute("UPDATE content_jobs SET status = 'canceled' WHERE id = %s", (job_id,))
        conn.execute("UPDATE content_jobs SET status = 'queued' WHERE id = %s", (job_id,))
    queued = [p for t, p in events_of(conn, job_id) if t == "content_job.queued"][1:]
    assert [(p["reason"], p["attempt"]) for p in queued] == [("error", 1), ("manual", 1)]
