"""Companies take turns and per-company limits hold, with real `skiplock worker` processes,
the real API and the real CLI (SPEC §3, §4)."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from api_harness import Api, running_api
from cli_helpers import one_line_error, run_cli
from job_handlers import read_runs
from skiplock.client import AsyncClient, QuotaExceeded
from worker_harness import start_worker_process, wait_for

Conn = psycopg.Connection[Any]


def new_company(conn: Conn, name: str) -> uuid.UUID:
    row = conn.execute(
        "INSERT INTO skiplock.companies (name) VALUES (%s) RETURNING id", (name,)
    ).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def add_sleeps(conn: Conn, company_id: uuid.UUID, n: int, seconds: float) -> None:
    conn.execute(
        "INSERT INTO skiplock.content_jobs (company_id, job_type, input) "
        "SELECT %s, 'sleep', jsonb_build_object('seconds', %s::float8, 'tick', 10) "
        "FROM generate_series(1, %s)",
        (company_id, seconds, n),
    )


def count(conn: Conn, company_id: uuid.UUID, status: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM skiplock.content_jobs WHERE company_id = %s AND status = %s",
        (company_id, status),
    ).fetchone()
    assert row is not None
    return int(row[0])


def companies_of_runs(conn: Conn, runs_file: Path) -> list[uuid.UUID]:
    """The company of each job run, in the order the handlers started."""
    ids = [job_id for job_id, _, _ in read_runs(runs_file)]
    rows = dict(
        conn.execute(
            "SELECT id::text, company_id FROM skiplock.content_jobs WHERE id = ANY(%s::uuid[])",
            (ids,),
        ).fetchall()
    )
    return [rows[job_id] for job_id in ids]


# ------------------------------------------------------------------------------------------
# Turns
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_worker_serves_three_equal_backlogs_in_turns_and_a_lone_job_at_once(
    conn: Conn, company_id: uuid.UUID, database_url: str, tmp_path: Path
) -> None:
    companies = [company_id, new_company(conn, "b"), new_company(conn, "c")]
    for company in companies:
        add_sleeps(conn, company, 400, 0.02)
    worker = start_worker_process(database_url, tmp_path, "--concurrency", "3")
    try:
        runs = tmp_path / "runs.txt"
        wait_for(lambda: len(read_runs(runs)) >= 30)
        first = Counter(companies_of_runs(conn, runs)[:30])
        assert sorted(first.values()) == [10, 10, 10], first
        # A company with nothing queued submits one job while 1,000 others wait.
        lone = new_company(conn, "lone")
        add_sleeps(conn, lone, 1, 0.0)
        wait_for(lambda: count(conn, lone, "done") == 1, timeout=10)
        waiting = sum(count(conn, c, "queued") for c in companies)
        assert waiting > 900, f"the lone job ran only once {1200 - waiting} others had"
    finally:
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.log()[-2000:]


# ------------------------------------------------------------------------------------------
# max_running
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_max_running_holds_across_two_worker_processes_and_none_lifts_it(
    conn: Conn, company_id: uuid.UUID, database_url: str, tmp_path: Path
) -> None:
    other = new_company(conn, "other")
    add_sleeps(conn, company_id, 240, 0.1)
    add_sleeps(conn, other, 240, 0.1)
    env = {"DATABASE_URL": database_url}
    limited = run_cli("company", "update", str(company_id), "--max-running", "3", env=env)
    assert limited.returncode == 0, limited.stderr
    workers = [start_worker_process(database_url, tmp_path, "--concurrency", "16") for _ in "ab"]
    samples: list[tuple[int, int]] = []
    sample = (
        "SELECT count(*) FILTER (WHERE company_id = %s), count(*) FILTER (WHERE company_id = %s) "
        "FROM skiplock.content_jobs WHERE status = 'running'"
    )

    def sampled(until: Any) -> Any:
        row = conn.execute(sample, (company_id, other)).fetchone()
        assert row is not None
        samples.append((int(row[0]), int(row[1])))
        return until()

    try:
        wait_for(lambda: sampled(lambda: count(conn, company_id, "done") >= 40), timeout=60)
        capped = list(samples)
        assert max(mine for mine, _ in capped) <= 3, capped
        assert max(theirs for _, theirs in capped) > 3  # the others ran meanwhile
        assert any(mine == 3 for mine, _ in capped)  # and the limit was used
        lifted = run_cli("company", "update", str(company_id), "--max-running", "none", env=env)
        assert json.loads(lifted.stdout)["maxRunning"] is None
        samples.clear()
        wait_for(lambda: sampled(lambda: samples[-1][0] > 3), timeout=30)
    finally:
        for worker in workers:
            worker.signal(signal.SIGTERM)
        codes = [worker.wait() for worker in workers]
    assert codes == [0, 0], [w.log()[-2000:] for w in workers]


# ------------------------------------------------------------------------------------------
# max_queued
# ------------------------------------------------------------------------------------------


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(database_url, tmp_path / "storage") as running:
        yield running


async def test_a_submit_past_max_queued_is_429_with_retry_after_and_stores_nothing(
    api: Api,
) -> None:
    api.sql("UPDATE skiplock.companies SET max_queued = 2 WHERE id = %s", (api.acme.company_id,))
    first, second = await api.submit(), await api.submit()
    refused = await api.client.post(
        f"{api.acme.prefix}/content-jobs",
        json={"jobType": "noop"},
        headers={**api.acme.headers, "Idempotency-Key": "past-the-limit"},
    )
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "quota_exceeded"
    assert "max_queued = 2" in refused.json()["error"]["message"]
    assert int(refused.headers["Retry-After"]) > 0
    stored = api.sql(
        "SELECT id::text FROM skiplock.content_jobs WHERE company_id = %s ORDER BY created_at",
        (api.acme.company_id,),
    )
    assert [row[0] for row in stored] == [first, second]
    assert api.sql("SELECT count(*) FROM skiplock.content_jobs WHERE idempotency_key IS NOT NULL")[
        0
    ] == (0,)
    # Another company is not limited by it; and checks come first: a 422 stays a 422.
    await api.submit(tenant=api.other)
    invalid = await api.client.post(
        f"{api.acme.prefix}/content-jobs", json={"jobType": "nope"}, headers=api.acme.headers
    )
    assert invalid.status_code == 422
    # The Python client raises its own error for it.
    async with AsyncClient(api.base_url, api.acme.api_key, api.acme.company_id) as client:
        with pytest.raises(QuotaExceeded) as quota:
            await client.submit("noop")
    assert quota.value.status == 429 and quota.value.code == "quota_exceeded"
    # Once one has started there is a place again; none lifts the limit.
    api.sql("UPDATE skiplock.content_jobs SET status = 'canceled' WHERE id = %s", (first,))
    await api.submit()
    api.sql("UPDATE skiplock.companies SET max_queued = NULL WHERE id = %s", (api.acme.company_id,))
    for _ in range(3):
        await api.submit()


async def test_concurrent_submits_never_take_a_company_past_max_queued(api: Api) -> None:
    api.sql("UPDATE skiplock.companies SET max_queued = 7 WHERE id = %s", (api.acme.company_id,))
    answers = await asyncio.gather(
        *(
            api.client.post(
                f"{api.acme.prefix}/content-jobs",
                json={"jobType": "noop"},
                headers=api.acme.headers,
            )
            for _ in range(20)
        )
    )
    assert sorted(a.status_code for a in answers) == [202] * 7 + [429] * 13
    queued = api.sql(
        "SELECT count(*) FROM skiplock.content_jobs WHERE company_id = %s",
        (api.acme.company_id,),
    )
    assert queued == [(7,)]


def test_sql_enqueue_past_max_queued_raises_with_the_limit_and_the_fix(
    conn: Conn, company_id: uuid.UUID
) -> None:
    conn.execute("UPDATE skiplock.companies SET max_queued = 2 WHERE id = %s", (company_id,))
    conn.execute("SELECT skiplock.enqueue_content_job(%s, 'noop')", (company_id,))
    with pytest.raises(psycopg.errors.CheckViolation) as caught:
        conn.execute(
            "SELECT skiplock.enqueue_content_jobs(%s, 'noop', %s::jsonb[])",
            (company_id, ["{}", "{}"]),
        )
    diag = caught.value.diag
    assert diag.constraint_name == "max_queued"
    assert "max_queued = 2" in (diag.message_primary or "")
    assert "skiplock company update" in (diag.message_hint or "")
    assert count(conn, company_id, "queued") == 1  # the whole batch was refused
    conn.execute("SELECT skiplock.enqueue_content_job(%s, 'noop')", (company_id,))
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("SELECT skiplock.enqueue_content_job(%s, 'noop')", (company_id,))
    # Retries of failed jobs are not submits: they go back to queued past the limit.
    conn.execute(
        "UPDATE skiplock.content_jobs SET status = 'canceled' WHERE company_id = %s", (company_id,)
    )
    conn.execute(
        "SELECT skiplock.enqueue_content_jobs(%s, 'noop', %s::jsonb[])", (company_id, ["{}"] * 2)
    )
    conn.execute("UPDATE skiplock.content_jobs SET status = 'queued' WHERE status = 'canceled'")
    assert count(conn, company_id, "queued") == 4


# ------------------------------------------------------------------------------------------
# skiplock company update
# ------------------------------------------------------------------------------------------


def test_company_update_sets_and_lifts_limits(database_url: str, conn: Conn) -> None:
    env = {"DATABASE_URL": database_url}
    made = json.loads(run_cli("company", "create", "limited", env=env).stdout)
    company = made["companyId"]
    both = run_cli(
        "company", "update", company, "--max-running", "4", "--max-queued", "100", env=env
    )
    assert both.returncode == 0, both.stderr
    assert json.loads(both.stdout) == {
        "companyId": company,
        "name": "limited",
        "maxRunning": 4,
        "maxQueued": 100,
    }
    one = json.loads(run_cli("company", "update", company, "--max-queued", "none", env=env).stdout)
    assert (one["maxRunning"], one["maxQueued"]) == (4, None)  # the other limit is kept
    row = conn.execute(
        "SELECT max_running, max_queued FROM skiplock.companies WHERE id = %s", (company,)
    ).fetchone()
    assert row == (4, None)
    shown = json.loads(run_cli("company", "update", company, env=env).stdout)
    assert shown["maxRunning"] == 4


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--max-running", "-1"], "--max-running '-1' is not a whole number"),
        (["--max-queued", "lots"], "--max-queued 'lots' is not a whole number"),
        (["--max-running", "99999999999"], "is not a whole number of jobs (0 to 2147483647)"),
    ],
)
def test_company_update_refuses_a_bad_value_in_one_line(
    database_url: str, company_id: uuid.UUID, args: list[str], expected: str
) -> None:
    env = {"DATABASE_URL": database_url}
    line = one_line_error(run_cli("company", "update", str(company_id), *args, env=env))
    assert expected in line


def test_company_update_of_an_unknown_company_is_one_line(database_url: str) -> None:
    env = {"DATABASE_URL": database_url}
    missing = str(uuid.uuid4())
    line = one_line_error(run_cli("company", "update", missing, "--max-running", "1", env=env))
    assert f"no company {missing}" in line
    line = one_line_error(run_cli("company", "update", "nope", "--max-running", "1", env=env))
    assert "not a company id" in line
