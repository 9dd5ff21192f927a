"""Bulk cancel and retry over real HTTP, real Postgres and a real worker process (SPEC §4, §8)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from api_harness import Api, Tenant, running_api
from worker_harness import await_for, process_exists, start_worker_process


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(database_url, tmp_path / "storage") as running:
        yield running


async def bulk(api: Api, action: str, body: Any = None, tenant: Tenant | None = None) -> Any:
    tenant = tenant or api.acme
    response = await api.client.post(
        f"{tenant.prefix}/content-jobs/{action}", json=body, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def statuses(api: Api, ids: list[str]) -> list[str]:
    rows = dict(
        api.sql("SELECT id::text, status FROM skiplock.content_jobs WHERE id = ANY(%s)", (ids,))
    )
    return [rows[i] for i in ids]


def insert_jobs(api: Api, tenant: Tenant, count: int, **columns: Any) -> list[str]:
    """count jobs of one statement (one trigger run), with the given column values."""
    columns = {"job_type": "noop", **columns}
    names = ["company_id", *columns]
    values = [tenant.company_id, *columns.values()]
    rows = api.sql(
        f"INSERT INTO skiplock.content_jobs ({', '.join(names)}) "
        f"SELECT {', '.join(['%s'] * len(values))} FROM generate_series(1, {count}) "
        "RETURNING id::text",
        values,
    )
    return [r[0] for r in rows]


# -- cancel ---------------------------------------------------------------------------------


@pytest.mark.slow
async def test_bulk_cancel_by_type_stops_running_handlers_and_their_children(
    api: Api, tmp_path: Path
) -> None:
    worker = start_worker_process(api.database_url, tmp_path, "--concurrency", "3")
    try:
        pid_files = [tmp_path / f"child-{n}.pid" for n in range(2)]
        running = [await api.submit("child", input={"pid_file": str(path)}) for path in pid_files]
        other_type_running = await api.submit("sleep", input={"seconds": 60})
        await await_for(lambda: statuses(api, [*running, other_type_running]) == ["running"] * 3)
        children = await await_for(
            lambda: (
                [int(p.read_text()) for p in pid_files if p.exists() and p.read_text()]
                if all(p.exists() and p.read_text().strip() for p in pid_files)
                else None
            )
        )
        # Every slot is taken: these stay queued.
        queued = [await api.submit("child", input={"pid_file": "/dev/null"}) for _ in range(2)]
        other_type_queued = await api.submit("sleep", input={"seconds": 60})
        other_company = await api.submit("child", api.other, input={"pid_file": "/dev/null"})

        answer = await bulk(api, "cancel", {"jobType": "child"})
        canceled_at = time.monotonic()
        assert answer == {"count": 4}
        await await_for(lambda: not any(process_exists(pid) for pid in children), timeout=5)
        assert time.monotonic() - canceled_at < 2.0  # SPEC: within a second (2x slack)
        await await_for(lambda: worker.log().count("job stopped") == 2, timeout=5)
        assert statuses(api, [*running, *queued]) == ["canceled"] * 4  # and they stay so
        assert statuses(api, [other_type_running]) == ["running"]
        assert statuses(api, [other_type_queued])[0] in ("queued", "running")
        assert statuses(api, [other_company])[0] != "canceled"
        canceled_events = api.sql(
            "SELECT job_id::text FROM skiplock.content_job_events "
            "WHERE type = 'content_job.canceled'"
        )
        assert sorted(e[0] for e in canceled_events) == sorted([*running, *queued])
    finally:
        worker.kill()


async def test_bulk_cancel_goes_in_batches_of_1000_each_one_transaction_and_one_doorbell(
    api: Api,
) -> None:
    ids = insert_jobs(api, api.acme, 2500)
    mine = insert_jobs(api, api.acme, 3, source_task_id="t-1")
    theirs = insert_jobs(api, api.other, 5)
    async with await psycopg.AsyncConnection.connect(api.database_url, autocommit=True) as listen:
        await listen.execute("LISTEN content_job_events")
        assert await bulk(api, "cancel", {"sourceTaskId": "t-1"}) == {"count": 3}
        assert await bulk(api, "cancel", {}) == {"count": 2500}
        rung = [n.payload async for n in listen.notifies(timeout=1.0)]
    acme = f'{{"companyId": "{api.acme.company_id}"}}'
    assert rung == [acme] * 4  # one per transaction: 1 for the 3, then 3 batches for 2,500
    batches = api.sql(
        "SELECT count(*) FROM skiplock.content_job_events WHERE type = 'content_job.canceled' "
        "GROUP BY xid ORDER BY count(*) DESC"
    )
    assert batches == [(1000,), (1000,), (500,), (3,)]
    assert set(statuses(api, [*ids, *mine])) == {"canceled"}
    assert set(statuses(api, theirs)) == {"queued"}  # another company's jobs: untouched
    assert await bulk(api, "cancel") == {"count": 0}  # nothing left matches


async def test_bulk_cancel_filters_by_status_and_leaves_finished_jobs_alone(api: Api) -> None:
    queued = insert_jobs(api, api.acme, 2)
    running = insert_jobs(
        api, api.acme, 2, status="running", locked_by="w", lease_expires_at="infinity", attempts=1
    )
    done = insert_jobs(api, api.acme, 1, status="done")
    assert await bulk(api, "cancel", {"status": ["running"]}) == {"count": 2}
    assert statuses(api, running) == ["canceled"] * 2
    assert statuses(api, queued) == ["queued"] * 2
    assert await bulk(api, "cancel", {"status": ["queued", "running"], "jobType": "nope"}) == {
        "count": 0
    }
    assert await bulk(api, "cancel", {"status": None, "jobType": None}) == {"count": 2}
    assert statuses(api, done) == ["done"]
    row = api.sql(
        "SELECT locked_by, lease_expires_at, finished_at IS NOT NULL FROM skiplock.content_jobs "
        "WHERE id = %s",
        (running[0],),
    )
    assert row == [(None, None, True)]  # the columns cancel_job.sql sets


async def test_a_bulk_change_leaves_jobs_created_after_its_first_batch_alone(api: Api) -> None:
    from skiplock import db, store

    insert_jobs(api, api.acme, 2)
    conn = await db.connect_async(api.database_url)
    async with conn:
        past = await (await conn.execute("SELECT now() - interval '1 hour'")).fetchone()
        assert past is not None
        params = {
            "company_id": api.acme.company_id,
            "statuses": ["queued", "running"],
            "job_type": None,
            "source_task_id": None,
            "limit": 1000,
        }
        early = await store.cancel_jobs_matching(conn, {**params, "cutoff": past[0]})
        assert (early["matched"], early["changed"]) == (0, 0)
        now = await store.cancel_jobs_matching(conn, {**params, "cutoff": None})
        assert (now["matched"], now["changed"]) == (2, 2)


# -- retry ----------------------------------------------------------------------------------


async def test_bulk_retry_resets_attempts_with_reason_retry(api: Api) -> None:
    failed = insert_jobs(
        api, api.acme, 3, status="failed", attempts=3, error_message="boom", source_task_id="t-1"
    )
    canceled = insert_jobs(api, api.acme, 2, status="canceled", attempts=1)
    queued = insert_jobs(api, api.acme, 1)
    theirs = insert_jobs(api, api.other, 2, status="failed", attempts=3)

    assert await bulk(api, "retry", {"status": ["failed"], "sourceTaskId": "t-2"}) == {"count": 0}
    assert await bulk(api, "retry", {"status": ["failed"]}) == {"count": 3}
    assert statuses(api, canceled) == ["canceled"] * 2
    rows = api.sql(
        "SELECT status, attempts, error_message, finished_at, run_at <= now() "
        "FROM skiplock.content_jobs WHERE id = ANY(%s)",
        (failed,),
    )
    assert rows == [("queued", 0, None, None, True)] * 3
    events = api.sql(
        "SELECT payload->>'reason', (payload->>'attempt')::int FROM skiplock.content_job_events "
        "WHERE job_id = ANY(%s) AND type = 'content_job.queued' AND payload ? 'reason'",
        (failed,),
    )
    assert events == [("retry", 3)] * 3
    assert await bulk(api, "retry") == {"count": 2}  # the rest: the canceled ones
    assert set(statuses(api, [*canceled, *queued])) == {"queued"}
    assert set(statuses(api, theirs)) == {"failed"}


# -- tenants and bodies -------------------------------------------------------------------


@pytest.mark.parametrize("action", ["cancel", "retry"])
async def test_bulk_routes_check_in_spec_order(api: Api, action: str) -> None:
    path = f"{api.acme.prefix}/content-jobs/{action}"
    post = api.client.post
    insert_jobs(api, api.acme, 1)
    insert_jobs(api, api.acme, 1, status="failed")

    async def status_of(url: str, headers: dict[str, str] | None = None, **kw: Any) -> int:
        return (await post(url, headers=headers or {}, **kw)).status_code

    bad_key = {"Authorization": "Bearer sk_nope"}
    assert await status_of(path) == 401
    assert await status_of(path, bad_key) == 401
    assert await status_of("/companies/nope/content-jobs/" + action, bad_key) == 401
    assert await status_of("/companies/nope/content-jobs/" + action, api.other.headers) == 404
    assert await status_of(path, api.other.headers, content="x") == 403  # before 415
    token = (await post(f"{api.acme.prefix}/stream-tokens", headers=api.acme.headers)).json()
    assert await status_of(f"{path}?token={token['token']}", json={}) == 401  # no token here
    token_header = {"Authorization": f"Bearer {token['token']}"}
    assert await status_of(path, token_header, json={}) == 401
    acme = api.acme.headers
    text = {**acme, "Content-Type": "text/plain"}
    assert await status_of(path, text, content=b"{}") == 415
    huge = b'{"jobType": "' + b"x" * (1 << 20) + b'"}'
    assert await status_of(path, {**acme, "Content-Type": "application/json"}, content=huge) == 413
    json_headers = {**acme, "Content-Type": "application/json"}
    assert await status_of(path, json_headers, content=b"{nope") == 400
    for body in (
        [],
        {"status": "queued"},
        {"status": ["done"]},
        {"status": [1]},
        {"jobType": 5},
        {"jobType": ""},
        {"sourceTaskId": "x" * 1001},
        {"nope": 1},
        {"jobType": "a\u0000b"},
    ):
        answer = await post(path, headers=acme, json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["error"]["code"] == "invalid"
    # Another company's key changes nothing here (403), and on its own path finds none of
    # this company's jobs: a filter that matches nothing answers {"count": 0}.
    assert await status_of(path, api.other.headers, json={}) == 403
    theirs = await post(f"{api.other.prefix}/content-jobs/{action}", headers=api.other.headers)
    assert (theirs.status_code, theirs.json()) == (200, {"count": 0})
    assert api.sql("SELECT status FROM skiplock.content_jobs ORDER BY status") == [
        ("failed",),
        ("queued",),
    ]
    assert (await post(path, headers=acme)).json() == {"count": 1}  # no body: every job
    assert (await post(path, headers=acme, json={})).json() == {"count": 0}


async def test_the_bulk_paths_are_not_job_ids(api: Api) -> None:
    job_id = await api.submit()
    got = await api.client.get(f"{api.acme.prefix}/content-jobs/cancel", headers=api.acme.headers)
    assert got.status_code == 404  # `cancel` is not a job id (not a UUID)
    single = await api.client.post(
        f"{api.acme.prefix}/content-jobs/{job_id}/cancel", headers=api.acme.headers
    )
    assert single.status_code == 200 and single.json()["status"] == "canceled"
    again = await api.client.post(
        f"{api.acme.prefix}/content-jobs/{job_id}/retry", headers=api.acme.headers
    )
    assert again.status_code == 200 and again.json()["status"] == "queued"


# -- stats ------------------------------------------------------------------------------------


async def test_stats_items_say_whether_their_type_is_paused(api: Api) -> None:
    insert_jobs(api, api.acme, 1, job_type="noop")
    insert_jobs(api, api.acme, 1, job_type="echo")
    insert_jobs(api, api.other, 1, job_type="noop")

    async def paused(tenant: Tenant) -> dict[str, bool]:
        answer = await api.client.get(f"{tenant.prefix}/stats", headers=tenant.headers)
        return {item["jobType"]: item["paused"] for item in answer.json()["items"]}

    assert await paused(api.acme) == {"noop": False, "echo": False}
    api.sql(
        "INSERT INTO skiplock.paused_job_types (job_type, company_id) VALUES ('noop', %s)",
        (api.acme.company_id,),
    )
    assert await paused(api.acme) == {"noop": True, "echo": False}
    assert await paused(api.other) == {"noop": False}
    api.sql("INSERT INTO skiplock.paused_job_types (job_type) VALUES ('echo'), ('noop')")
    assert await paused(api.acme) == {"noop": True, "echo": True}
    assert await paused(api.other) == {"noop": True}


async def test_bulk_cancel_of_many_companies_concurrently_never_mixes_tenants(api: Api) -> None:
    insert_jobs(api, api.acme, 1500)
    insert_jobs(api, api.other, 1500)
    answers = await asyncio.gather(
        bulk(api, "cancel", {}), bulk(api, "cancel", {}, tenant=api.other)
    )
    assert answers == [{"count": 1500}, {"count": 1500}]
    by_company = api.sql(
        "SELECT company_id, count(*) FROM skiplock.content_job_events "
        "WHERE type = 'content_job.canceled' GROUP BY company_id"
    )
    assert dict(by_company) == {api.acme.company_id: 1500, api.other.company_id: 1500}
