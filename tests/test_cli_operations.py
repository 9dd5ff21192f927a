"""`skiplock jobs cancel|retry` by filter and `skiplock jobs pause|resume`, run as the real
command line, with real worker processes where claiming matters (SPEC §1, §8)."""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cli_helpers import one_line_error, run_cli
from worker_harness import enqueue, events, start_worker_process, status_is, wait_for

Conn = psycopg.Connection[Any]


@pytest.fixture
def other_id(conn: Conn) -> uuid.UUID:
    row = conn.execute("INSERT INTO companies (name) VALUES ('other') RETURNING id").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def jobs_cli(database_url: str, *args: str) -> Any:
    result = run_cli("jobs", *args, env={"DATABASE_URL": database_url})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def count_status(conn: Conn, status: str, company: uuid.UUID | None = None) -> int:
    row = conn.execute(
        "SELECT count(*) FROM content_jobs WHERE status = %s AND (%s::uuid IS NULL OR "
        "company_id = %s::uuid)",
        (status, company, company),
    ).fetchone()
    assert row is not None
    return int(row[0])


# -- bulk cancel and retry ----------------------------------------------------------------


def test_jobs_cancel_by_filter_with_a_dry_run_first(
    conn: Conn, company_id: uuid.UUID, other_id: uuid.UUID, database_url: str
) -> None:
    for company in (company_id, other_id):
        for _ in range(3):
            enqueue(conn, company, "noop")
        enqueue(conn, company, "echo", source_task_id="t-1")
    url = database_url

    assert jobs_cli(url, "cancel", "--type", "noop", "--dry-run") == {"count": 6}
    assert count_status(conn, "canceled") == 0  # a dry run changes nothing
    assert jobs_cli(url, "cancel", "--company", str(company_id), "--type", "noop") == {"count": 3}
    assert count_status(conn, "canceled", other_id) == 0
    assert jobs_cli(url, "cancel", "--source-task-id", "t-1", "--status", "queued") == {"count": 2}
    assert jobs_cli(url, "cancel", "--status", "running", "--status", "queued") == {"count": 3}
    assert count_status(conn, "queued") == 0
    assert jobs_cli(url, "cancel", "--status", "queued") == {"count": 0}

    # Retry by filter: the failed/canceled ones, reason retry, attempts reset.
    assert jobs_cli(url, "retry", "--company", str(other_id), "--dry-run") == {"count": 4}
    assert jobs_cli(url, "retry", "--company", str(other_id), "--type", "echo") == {"count": 1}
    [echo] = conn.execute(
        "SELECT id FROM content_jobs WHERE company_id = %s AND job_type = 'echo'", (other_id,)
    ).fetchall()
    kind, payload = events(conn, echo[0])[-1]
    assert (kind, payload["reason"], payload["attempt"]) == ("content_job.queued", "retry", 0)
    assert jobs_cli(url, "retry", "--status", "canceled") == {"count": 7}
    assert count_status(conn, "queued") == 8


def test_jobs_cancel_and_retry_mistakes_are_one_line(
    conn: Conn, company_id: uuid.UUID, database_url: str
) -> None:
    env = {"DATABASE_URL": database_url}
    job_id = str(enqueue(conn, company_id, "noop"))
    neither = one_line_error(run_cli("jobs", "cancel", env=env))
    assert "name a JOB_ID or at least one filter" in neither
    both = one_line_error(run_cli("jobs", "cancel", job_id, "--type", "noop", env=env))
    assert "either a JOB_ID or a filter" in both
    dry = one_line_error(run_cli("jobs", "retry", job_id, "--dry-run", env=env))
    assert "either a JOB_ID or a filter" in dry
    unknown = one_line_error(
        run_cli("jobs", "cancel", "--company", str(uuid.uuid4()), "--type", "x", env=env)
    )
    assert unknown.startswith("skiplock: no company with id")
    # An empty --company (an unset shell variable) is no company, never "every company".
    empty = one_line_error(run_cli("jobs", "cancel", "--company", "", env=env))
    assert "'' is not a company id" in empty
    paused = one_line_error(run_cli("jobs", "pause", "noop", "--company", "", env=env))
    assert "'' is not a company id" in paused
    assert conn.execute("SELECT count(*) FROM paused_job_types").fetchone() == (0,)
    blank = one_line_error(run_cli("jobs", "retry", "--type", " ", env=env))
    assert "--type must be 1 to 200 characters" in blank
    wrong_status = run_cli("jobs", "retry", "--status", "queued", env=env)
    assert wrong_status.returncode == 2 and "invalid choice: 'queued'" in wrong_status.stderr
    assert count_status(conn, "queued") == 1  # nothing changed


# -- pause and resume ---------------------------------------------------------------------


def test_pause_and_resume_are_idempotent_and_print_what_is_paused(
    conn: Conn, company_id: uuid.UUID, database_url: str
) -> None:
    url = database_url
    first = jobs_cli(url, "pause", "noop")
    assert first["jobType"] == "noop" and len(first["paused"]) == 1
    assert first["paused"][0]["companyId"] is None and first["paused"][0]["pausedAt"].endswith("Z")
    assert jobs_cli(url, "pause", "noop") == first  # again: no change, same pausedAt
    mine = jobs_cli(url, "pause", "noop", "--company", str(company_id))
    assert [p["companyId"] for p in mine["paused"]] == [None, str(company_id)]
    assert conn.execute("SELECT count(*) FROM paused_job_types").fetchone() == (2,)

    one = run_cli("jobs", "resume", "noop", "--company", str(company_id), env={"DATABASE_URL": url})
    assert one.returncode == 0
    assert [p["companyId"] for p in json.loads(one.stdout)["paused"]] == [None]
    assert one.stderr.strip() == (
        "skiplock: note: noop is still paused for every company; "
        "`skiplock jobs resume noop` lifts that"
    )
    jobs_cli(url, "pause", "noop", "--company", str(company_id))
    assert jobs_cli(url, "resume", "noop") == {"jobType": "noop", "paused": []}  # every pause
    assert jobs_cli(url, "resume", "noop") == {"jobType": "noop", "paused": []}

    env = {"DATABASE_URL": url}
    unknown = one_line_error(
        run_cli("jobs", "pause", "noop", "--company", str(uuid.uuid4()), env=env)
    )
    assert unknown.startswith("skiplock: no company with id")
    assert "not a company id" in one_line_error(
        run_cli("jobs", "resume", "noop", "--company", "x", env=env)
    )
    assert "TYPE must be 1 to 200" in one_line_error(run_cli("jobs", "pause", "", env=env))


@pytest.mark.slow
def test_a_paused_type_waits_while_others_run_and_resume_claims_it_within_a_second(
    conn: Conn, company_id: uuid.UUID, other_id: uuid.UUID, database_url: str, tmp_path: Path
) -> None:
    url = database_url
    workers = [start_worker_process(url, tmp_path, "--concurrency", "4") for _ in range(2)]
    try:
        jobs_cli(url, "pause", "echo")
        paused = [enqueue(conn, company, "echo") for company in (company_id, other_id)]
        # Jobs of another type enqueued after them run; the paused ones stay queued, through
        # several claims (each done job frees a slot and claims again).
        for _ in range(3):
            wait_for(status_is(conn, enqueue(conn, company_id, "noop"), "done"))
        assert all(status_is(conn, job_id, "queued")() for job_id in paused)

        jobs_cli(url, "resume", "echo", "--company", str(other_id))  # still paused for all
        wait_for(status_is(conn, enqueue(conn, other_id, "noop"), "done"))
        assert all(status_is(conn, job_id, "queued")() for job_id in paused)

        resumed = run_cli("jobs", "resume", "echo", env={"DATABASE_URL": url})
        committed = time.monotonic()
        assert resumed.returncode == 0
        wait_for(lambda: all(status_is(conn, job_id, "running", "done")() for job_id in paused))
        assert time.monotonic() - committed < 2.0  # SPEC: within a second (2x slack)
        wait_for(lambda: all(status_is(conn, job_id, "done")() for job_id in paused))
    finally:
        for worker in workers:
            worker.signal(signal.SIGTERM)
        codes = [worker.wait() for worker in workers]
    assert codes == [0, 0]


@pytest.mark.slow
def test_a_type_paused_for_one_company_runs_for_the_others(
    conn: Conn, company_id: uuid.UUID, other_id: uuid.UUID, database_url: str, tmp_path: Path
) -> None:
    url = database_url
    worker = start_worker_process(url, tmp_path, "--concurrency", "2")
    try:
        jobs_cli(url, "pause", "echo", "--company", str(company_id))
        mine = enqueue(conn, company_id, "echo")
        theirs = enqueue(conn, other_id, "echo")
        wait_for(status_is(conn, theirs, "done"))
        wait_for(status_is(conn, enqueue(conn, company_id, "noop"), "done"))
        assert status_is(conn, mine, "queued")()

        resumed = run_cli(
            "jobs", "resume", "echo", "--company", str(company_id), env={"DATABASE_URL": url}
        )
        committed = time.monotonic()
        assert resumed.returncode == 0 and resumed.stderr == ""
        wait_for(status_is(conn, mine, "running", "done"))
        assert time.monotonic() - committed < 2.0  # SPEC: within a second (2x slack)
    finally:
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0


# -- the README's SQL recipes -------------------------------------------------------------


def readme_sql_statements() -> list[str]:
    """The statements of the README's "The queue in SQL" block, comments dropped."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## The queue in SQL", 1)[1]
    block = section.split("```sql\n", 1)[1].split("```", 1)[0]
    code = "\n".join(line.split("--", 1)[0] for line in block.splitlines())
    return [part.strip() for part in code.split(";") if part.strip()]


def test_the_readme_sql_recipes_run_as_written(
    conn: Conn, company_id: uuid.UUID, database_url: str
) -> None:
    job_id = enqueue(conn, company_id, "video")
    enqueue(conn, company_id, "video", status="done", finished_at="2000-01-01")
    # A webhook id that names none: its recipe must still run (and change nothing).
    ids = {"company id": company_id, "job id": job_id, "webhook id": uuid.uuid4()}
    statements = readme_sql_statements()
    assert any("paused_job_types" in s for s in statements)
    for statement in statements:
        if statement.startswith("LISTEN"):
            continue
        for name, value in ids.items():
            statement = statement.replace(f"<{name}>", str(value))
        conn.execute(statement.replace("%", "%%"))
    # The batch recipe canceled the queued video job (and left the done one alone); the
    # pause recipe paused and resumed.
    assert count_status(conn, "done") == 1
    assert status_is(conn, job_id, "canceled")()
    assert conn.execute("SELECT count(*) FROM paused_job_types").fetchone() == (0,)
