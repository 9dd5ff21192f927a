"""`skiplock submit` against the real API, and `skiplock jobs …` on the real database, each
run as the real command line in a subprocess."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from api_harness import Api, Tenant, running_api
from cli_helpers import one_line_error, run_cli
from worker_harness import enqueue, events, job, running_worker


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(database_url, tmp_path / "storage") as running:
        yield running


def client_env(api: Api, tenant: Tenant | None = None) -> dict[str, str]:
    tenant = tenant or api.acme
    return {
        "SKIPLOCK_URL": api.base_url,
        "SKIPLOCK_API_KEY": tenant.api_key,
        "SKIPLOCK_COMPANY_ID": str(tenant.company_id),
    }


async def submit(api: Api, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`skiplock submit ARGS` in a thread: the API answers from this test's event loop."""
    return await asyncio.to_thread(run_cli, "submit", *args, env={**client_env(api), **env})


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


# -- skiplock submit -----------------------------------------------------------------------


async def test_submit_prints_the_job_and_leaves_it_queued(api: Api, tmp_path: Path) -> None:
    (tmp_path / "input.json").write_text('{"text": "from a file"}')
    result = await submit(api, "echo", "--input", f"@{tmp_path / 'input.json'}")
    assert result.returncode == 0, result.stderr
    [answer] = json_lines(result.stdout)
    assert answer["status"] == "queued"
    stored = api.sql("SELECT input FROM skiplock.content_jobs WHERE id = %s", (answer["jobId"],))
    assert stored == [({"text": "from a file"},)]


async def test_submit_without_a_company_id_learns_it_from_the_key(api: Api) -> None:
    env = {**client_env(api, api.other), "SKIPLOCK_COMPANY_ID": None}
    result = await asyncio.to_thread(run_cli, "submit", "noop", env=env)
    assert result.returncode == 0, result.stderr
    [answer] = json_lines(result.stdout)
    stored = api.sql(
        "SELECT company_id FROM skiplock.content_jobs WHERE id = %s", (answer["jobId"],)
    )
    assert stored == [(api.other.company_id,)]


async def test_submit_wait_out_saves_the_output_of_a_real_worker(api: Api, tmp_path: Path) -> None:
    out = tmp_path / "result.txt"
    async with running_worker(api.database_url, api.storage_dir):
        result = await submit(
            api,
            "echo",
            "--input",
            '{"text": "hello"}',
            "--source-task-id",
            "t-9",
            "--out",
            str(out),
        )
        nowhere = await submit(api, "echo", "--out", str(tmp_path / "no" / "such.txt"))
    assert result.returncode == 0, result.stderr
    answer, final = json_lines(result.stdout)
    assert final["id"] == answer["jobId"] and final["status"] == "done"
    assert final["sourceTaskId"] == "t-9"
    assert out.read_bytes() == b"hello"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []
    assert one_line_error(nowhere).startswith(f"skiplock: cannot write {tmp_path}/no/such.txt")


async def test_submit_wait_exits_1_when_the_job_fails(api: Api) -> None:
    async with running_worker(api.database_url, api.storage_dir):
        result = await submit(api, "doomed", "--wait")
    assert result.returncode == 1, result.stderr
    final = json_lines(result.stdout)[-1]
    assert final["status"] == "failed"
    assert result.stderr.strip() == f"job {final['id']} failed: this input can never work"


async def test_submit_mistakes_are_one_line(api: Api) -> None:
    bad_key = one_line_error(await submit(api, "noop", SKIPLOCK_API_KEY="sk_nope"))
    assert "the API refused the key" in bad_key and "SKIPLOCK_API_KEY" in bad_key
    theirs = one_line_error(await submit(api, "noop", SKIPLOCK_API_KEY=api.other.api_key))
    assert "another company" in theirs and "SKIPLOCK_COMPANY_ID" in theirs
    unknown_type = one_line_error(await submit(api, "nope"))
    assert unknown_type.startswith("skiplock: the API answered 422 invalid: unknown jobType 'nope'")
    bad_json = one_line_error(await submit(api, "noop", "--input", "{nope"))
    assert bad_json.startswith("skiplock: --input is not valid JSON")
    not_object = one_line_error(await submit(api, "noop", "--input", "[1]"))
    assert "must be a JSON object" in not_object
    no_file = one_line_error(await submit(api, "noop", "--input", "@/no/such/file.json"))
    assert "cannot read the --input file '/no/such/file.json'" in no_file
    assert api.sql("SELECT count(*) FROM skiplock.content_jobs") == [(0,)]


def test_submit_to_a_down_api_or_without_a_key_is_one_line() -> None:
    company = str(uuid.uuid4())
    env = {"SKIPLOCK_URL": "http://127.0.0.1:1", "SKIPLOCK_API_KEY": "sk_x"}
    down = one_line_error(run_cli("submit", "noop", env={**env, "SKIPLOCK_COMPANY_ID": company}))
    assert down.startswith("skiplock: cannot reach the skiplock API at http://127.0.0.1:1")
    assert "SKIPLOCK_URL" in down
    no_key = one_line_error(
        run_cli("submit", "noop", env={"SKIPLOCK_API_KEY": None, "SKIPLOCK_COMPANY_ID": company})
    )
    assert "SKIPLOCK_API_KEY is not set" in no_key
    flags = one_line_error(
        run_cli(
            "submit", "noop", "--url", "http://127.0.0.1:1", "--api-key", "k", "--company-id", "x"
        )
    )
    assert flags == "skiplock: 'x' is not a company id (expected a UUID)"


# -- skiplock jobs -------------------------------------------------------------------------


def test_jobs_list_and_show_read_the_database(
    conn: psycopg.Connection[Any], company_id: uuid.UUID, database_url: str
) -> None:
    other = conn.execute("INSERT INTO companies (name) VALUES ('other') RETURNING id").fetchone()
    assert other is not None
    mine = [enqueue(conn, company_id, "noop") for _ in range(3)]
    echo = enqueue(conn, company_id, "echo", {"text": "x"})
    theirs = enqueue(conn, other[0], "noop")
    env = {"DATABASE_URL": database_url}

    def listed(*args: str) -> list[str]:
        result = run_cli("jobs", "list", *args, env=env)
        assert result.returncode == 0, result.stderr
        return [item["id"] for item in json_lines(result.stdout)]

    every = [str(j) for j in [theirs, echo, *reversed(mine)]]
    assert listed() == every
    assert listed("--limit", "2") == every[:2]
    assert listed("--company", str(company_id), "--type", "noop") == every[2:]
    assert listed("--status", "running") == []
    shown = run_cli("jobs", "show", str(echo), env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["input"] == {"text": "x"}
    assert "no job with id" in one_line_error(run_cli("jobs", "show", str(uuid.uuid4()), env=env))
    assert "not a job id" in one_line_error(run_cli("jobs", "show", "nope", env=env))
    assert "not a company id" in one_line_error(run_cli("jobs", "list", "--company", "x", env=env))


def test_jobs_cancel_and_retry_fire_the_apis_events(
    conn: psycopg.Connection[Any], company_id: uuid.UUID, database_url: str
) -> None:
    job_id = enqueue(conn, company_id, "noop")
    env = {"DATABASE_URL": database_url}
    retry_queued = one_line_error(run_cli("jobs", "retry", str(job_id), env=env))
    assert retry_queued.endswith("is queued; only failed or canceled jobs can be retried")
    canceled = run_cli("jobs", "cancel", str(job_id), env=env)
    assert canceled.returncode == 0, canceled.stderr
    assert json.loads(canceled.stdout)["status"] == "canceled"
    assert run_cli("jobs", "cancel", str(job_id), env=env).returncode == 0  # already: unchanged
    retried = run_cli("jobs", "retry", str(job_id), env=env)
    assert retried.returncode == 0, retried.stderr
    assert (json.loads(retried.stdout)["status"], job(conn, job_id)["status"]) == (
        "queued",
        "queued",
    )
    types = [(kind, payload.get("reason")) for kind, payload in events(conn, job_id)]
    assert types == [
        ("content_job.queued", None),
        ("content_job.canceled", None),
        ("content_job.queued", "retry"),
    ]
    conn.execute("UPDATE content_jobs SET status = 'done' WHERE id = %s", (job_id,))
    done = one_line_error(run_cli("jobs", "cancel", str(job_id), env=env))
    assert done.endswith("is already done; only queued or running jobs can be canceled")
    missing = one_line_error(run_cli("jobs", "cancel", str(uuid.uuid4()), env=env))
    assert "no job with id" in missing
