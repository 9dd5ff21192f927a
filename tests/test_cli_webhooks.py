"""`skiplock webhooks …` and `skiplock schedules …` on the real database, run as the real
command line in a subprocess."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from cli_helpers import one_line_error, run_cli
from skiplock.webhooks import new_secret

Conn = psycopg.Connection[Any]


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def make_webhook(conn: Conn, company_id: uuid.UUID) -> uuid.UUID:
    row = conn.execute(
        "INSERT INTO webhooks (company_id, url, events, secret) "
        "VALUES (%s, 'https://example.com/hook', ARRAY['content_job.canceled'], %s) RETURNING id",
        (company_id, new_secret()),
    ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def test_webhooks_list_deliveries_retry_and_delete(
    conn: Conn, company_id: uuid.UUID, database_url: str
) -> None:
    env = {"DATABASE_URL": database_url}
    hook = make_webhook(conn, company_id)
    conn.execute(
        "SELECT enqueue_content_jobs(%s, 'noop', array_fill('{}'::jsonb, ARRAY[3]))", (company_id,)
    )
    conn.execute("UPDATE content_jobs SET status = 'canceled'")
    conn.execute(
        "UPDATE webhook_deliveries SET status = 'failed', attempts = 8, next_attempt_at = NULL, "
        "last_error = 'HTTP 503: down' WHERE id = (SELECT id FROM webhook_deliveries LIMIT 1)"
    )

    listed = run_cli("webhooks", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    [item] = lines(listed.stdout)
    assert item["id"] == str(hook) and item["companyId"] == str(company_id)
    assert (item["pending"], item["failed"], item["delivered"]) == (2, 1, 0)
    assert item["lastError"] == "HTTP 503: down"
    assert "secret" not in item and "whsec_" not in listed.stdout
    other = run_cli("webhooks", "list", "--company", str(uuid.uuid4()), env=env)
    assert other.returncode == 0 and other.stdout == ""

    sent = run_cli("webhooks", "deliveries", str(hook), env=env)
    assert sent.returncode == 0, sent.stderr
    assert sorted(d["status"] for d in lines(sent.stdout)) == ["failed", "pending", "pending"]
    failed = run_cli("webhooks", "deliveries", str(hook), "--status", "failed", env=env)
    [only] = lines(failed.stdout)
    assert (only["attempts"], only["lastError"]) == (8, "HTTP 503: down")

    retried = run_cli("webhooks", "retry", str(hook), env=env)
    assert retried.returncode == 0 and lines(retried.stdout) == [{"count": 1}]
    again = conn.execute(
        "SELECT attempts, next_attempt_at <= now() FROM webhook_deliveries WHERE id = %s",
        (uuid.UUID(only["id"]),),
    ).fetchone()
    assert again == (0, True)

    deleted = run_cli("webhooks", "delete", str(hook), env=env)
    assert deleted.returncode == 0, deleted.stderr
    assert conn.execute("SELECT count(*) FROM webhook_deliveries").fetchone() == (0,)
    for action in ("deliveries", "retry", "delete"):
        missing = run_cli("webhooks", action, str(hook), env=env)
        assert one_line_error(missing) == f"skiplock: no webhook with id {hook}"
    assert "is not a webhook id" in one_line_error(run_cli("webhooks", "delete", "x", env=env))


def test_schedules_list_and_delete(conn: Conn, company_id: uuid.UUID, database_url: str) -> None:
    env = {"DATABASE_URL": database_url}
    soon = datetime.now(UTC) + timedelta(minutes=5)
    row = conn.execute(
        "INSERT INTO schedules (company_id, job_type, cron, timezone, next_run_at) "
        "VALUES (%s, 'noop', '*/5 * * * *', 'Europe/Paris', %s) RETURNING id",
        (company_id, soon),
    ).fetchone()
    assert row is not None
    listed = run_cli("schedules", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    [item] = lines(listed.stdout)
    assert (item["id"], item["cron"], item["timezone"]) == (
        str(row[0]),
        "*/5 * * * *",
        "Europe/Paris",
    )
    assert datetime.fromisoformat(item["nextRunAt"]) == soon
    assert (item["lastRunAt"], item["lastJobId"], item["companyId"]) == (
        None,
        None,
        str(company_id),
    )
    deleted = run_cli("schedules", "delete", str(row[0]), env=env)
    assert deleted.returncode == 0 and lines(deleted.stdout)[0]["deleted"] is True
    assert run_cli("schedules", "list", env=env).stdout == ""
    missing = run_cli("schedules", "delete", str(row[0]), env=env)
    assert one_line_error(missing) == f"skiplock: no schedule with id {row[0]}"


def test_a_bad_webhook_allow_private_value_is_one_line() -> None:
    line = one_line_error(run_cli("worker", env={"SKIPLOCK_WEBHOOK_ALLOW_PRIVATE": "maybe"}))
    assert line == (
        "skiplock: SKIPLOCK_WEBHOOK_ALLOW_PRIVATE='maybe' is not true or false (default false)"
    )
