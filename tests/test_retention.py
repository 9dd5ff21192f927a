"""Job retention (SKIPLOCK_JOB_RETENTION_DAYS, SPEC §8): finished jobs past the limit go with
their events, asset rows and stored bytes; everything else stays. Real Postgres, a real
worker and the real API."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from api_harness import Api, running_api
from cli_helpers import one_line_error, run_cli
from skiplock import db
from skiplock.errors import ConfigError
from skiplock.settings import load_settings
from skiplock.storage import LocalDiskStorage, bytes_chunks
from skiplock.worker import retention
from storage_backends import Backend, key, pattern
from worker_harness import (
    await_for,
    enqueue,
    running_worker,
    start_worker_process,
    status_is,
    wait_for,
)

DAY = 86_400
Conn = psycopg.Connection[Any]


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(database_url, tmp_path / "storage") as running:
        yield running


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Any]:
    opened = await db.open_pool(database_url, min_size=1, max_size=4, name="test")
    try:
        yield opened
    finally:
        await opened.close()


def age(api: Api, ids: list[str], *, created_days: int, finished_days: int | None) -> None:
    """Move jobs into the past: created (and finished) that many days ago."""
    api.sql(
        "UPDATE skiplock.content_jobs SET created_at = now() - make_interval(days => %s), "
        "finished_at = CASE WHEN %s::int IS NULL THEN finished_at "
        "ELSE now() - make_interval(days => %s::int) END WHERE id = ANY(%s)",
        (created_days, finished_days, finished_days, ids),
    )


def owned(api: Api, job_id: str) -> dict[str, Any]:
    """What a job has in the database: its row, events, webhook deliveries and asset row."""
    [(jobs, events, deliveries, assets)] = api.sql(
        "SELECT (SELECT count(*) FROM skiplock.content_jobs WHERE id = %(id)s), "
        "(SELECT count(*) FROM skiplock.content_job_events WHERE job_id = %(id)s), "
        "(SELECT count(*) FROM skiplock.webhook_deliveries WHERE job_id = %(id)s), "
        "(SELECT count(*) FROM skiplock.assets a JOIN skiplock.content_jobs j "
        " ON j.result_asset_id = a.id WHERE j.id = %(id)s)",
        {"id": job_id},
    )
    return {"job": jobs, "events": events, "deliveries": deliveries, "assets": assets}


async def test_retention_deletes_exactly_the_finished_jobs_past_the_limit_with_what_they_own(
    api: Api, pool: Any
) -> None:
    storage = LocalDiskStorage(api.storage_dir)
    # A webhook for every event: each job owns delivery rows too (sent to a documentation
    # address the worker refuses, so they stay).
    api.sql(
        "INSERT INTO skiplock.webhooks (company_id, url, events, secret) VALUES "
        "(%s, 'http://192.0.2.1/hook', ARRAY['content_job.queued', 'content_job.done', "
        "'content_job.failed', 'content_job.canceled'], 'whsec_' || repeat('A', 43) || '=')",
        (api.acme.company_id,),
    )
    async with running_worker(api.database_url, api.storage_dir, concurrency=4):
        done = [await api.submit("echo", input={"text": f"out {n}"}) for n in range(3)]
        failed = await api.submit("doomed")
        canceled = await api.submit("noop", runAt="2999-01-01T00:00:00Z")
        await api.client.post(
            f"{api.acme.prefix}/content-jobs/{canceled}/cancel", headers=api.acme.headers
        )
        waiting = await api.submit("noop", runAt="2999-01-01T00:00:00Z")
        await await_for(
            lambda: (
                api.sql(
                    "SELECT count(*) FROM skiplock.content_jobs "
                    "WHERE status IN ('queued', 'running')"
                )
                == [(1,)]
            )
        )
    assets = dict(
        api.sql(
            "SELECT j.id::text, a.object_key FROM skiplock.content_jobs j "
            "JOIN skiplock.assets a ON a.id = j.result_asset_id"
        )
    )
    files = {job_id: api.storage_dir / key for job_id, key in assets.items()}
    assert len(files) == 3 and all(path.is_file() for path in files.values())

    old = [done[0], done[1], failed, canceled]
    age(api, old, created_days=10, finished_days=8)
    age(api, [done[2]], created_days=10, finished_days=6)  # finished inside the limit
    age(api, [waiting], created_days=30, finished_days=None)  # old, but never finished
    before = {job_id: owned(api, job_id) for job_id in [*done, failed, canceled, waiting]}
    assert all(before[j]["events"] >= 2 and before[j]["deliveries"] >= 2 for j in old)

    purged = await retention.run_once(pool, 7 * DAY, retention.storage_lookup(storage))

    assert (purged.jobs, purged.objects, purged.objects_left) == (4, 2, 0)
    assert purged.events == sum(before[j]["events"] for j in old)
    for job_id in old:
        assert owned(api, job_id) == {"job": 0, "events": 0, "deliveries": 0, "assets": 0}
    for job_id in (done[2], waiting):
        assert owned(api, job_id) == before[job_id]
    assert {job_id: path.is_file() for job_id, path in files.items()} == {
        done[0]: False,
        done[1]: False,
        done[2]: True,
    }
    assert api.sql("SELECT count(*) FROM skiplock.assets") == [(1,)]

    # A deleted job's routes (and its output's) answer 404; a kept one's still work.
    headers = api.acme.headers
    for path in (
        f"/content-jobs/{done[0]}",
        f"/content-jobs/{done[0]}/events",
        f"/content-jobs/{failed}/retry",
    ):
        method = api.client.post if path.endswith("/retry") else api.client.get
        answer = await method(f"{api.acme.prefix}{path}", headers=headers)
        assert answer.status_code == 404, (path, answer.text)
    kept = await api.client.get(f"{api.acme.prefix}/content-jobs/{done[2]}", headers=headers)
    assert kept.status_code == 200
    kept_asset = kept.json()["resultAssetId"]
    content = await api.client.get(
        f"{api.acme.prefix}/assets/{kept_asset}/content", headers=headers
    )
    assert content.status_code == 200 and content.content == b"out 2"

    assert (await retention.run_once(pool, 7 * DAY, retention.storage_lookup(storage))).jobs == 0


async def test_a_deleted_jobs_asset_answers_404(api: Api, pool: Any) -> None:
    async with running_worker(api.database_url, api.storage_dir):
        job_id = await api.submit("echo", input={"text": "x"})
        await await_for(lambda: api.sql("SELECT status FROM skiplock.content_jobs") == [("done",)])
    [(asset_id,)] = api.sql("SELECT result_asset_id::text FROM skiplock.content_jobs")
    age(api, [job_id], created_days=2, finished_days=2)
    lookup = retention.storage_lookup(LocalDiskStorage(api.storage_dir))
    assert (await retention.run_once(pool, DAY, lookup)).jobs == 1
    for path in (f"/assets/{asset_id}", f"/assets/{asset_id}/content"):
        answer = await api.client.get(f"{api.acme.prefix}{path}", headers=api.acme.headers)
        assert answer.status_code == 404, path


def insert_finished(conn: Conn, company_id: uuid.UUID, count: int, days_ago: int) -> None:
    """count done jobs (one statement, an event each) created and finished days_ago."""
    conn.execute(
        "INSERT INTO skiplock.content_jobs (company_id, job_type, status, created_at, "
        "finished_at) SELECT %s, 'noop', 'done', now() - make_interval(days => %s), "
        "now() - make_interval(days => %s) FROM generate_series(1, %s)",
        (company_id, days_ago, days_ago, count),
    )


async def test_bytes_no_backend_here_can_reach_are_left_and_the_rows_go(
    api: Api, pool: Any
) -> None:
    async with running_worker(api.database_url, api.storage_dir):
        job_id = await api.submit("echo", input={"text": "x"})
        await await_for(lambda: api.sql("SELECT status FROM skiplock.content_jobs") == [("done",)])
    [(key,)] = api.sql("SELECT object_key FROM skiplock.assets")
    age(api, [job_id], created_days=2, finished_days=2)
    purged = await retention.run_once(pool, DAY, retention.storage_lookup())  # no backend
    assert (purged.jobs, purged.objects, purged.objects_left) == (1, 0, 1)
    assert (api.storage_dir / key).is_file()  # an orphan, never a row naming no bytes
    assert api.sql("SELECT count(*) FROM skiplock.assets") == [(0,)]


async def test_workers_purging_side_by_side_share_the_work(
    conn: Conn, company_id: uuid.UUID, pool: Any
) -> None:
    other = conn.execute("INSERT INTO companies (name) VALUES ('b') RETURNING id").fetchone()
    assert other is not None
    insert_finished(conn, company_id, 2500, days_ago=3)
    insert_finished(conn, other[0], 700, days_ago=3)
    insert_finished(conn, company_id, 10, days_ago=1)  # inside the limit
    lookup = retention.storage_lookup()
    results = await asyncio.gather(*(retention.run_once(pool, 2 * DAY, lookup) for _ in range(3)))
    assert sum(r.jobs for r in results) == 3200
    assert conn.execute("SELECT count(*) FROM content_jobs").fetchone() == (10,)
    assert conn.execute("SELECT count(*) FROM content_job_events").fetchone() == (10,)


def test_job_retention_settings_are_checked_at_start(database_url: str) -> None:
    assert load_settings({}).job_retention_seconds() is None
    assert load_settings({"SKIPLOCK_JOB_RETENTION_DAYS": "30"}).job_retention_seconds() == 30 * DAY
    both = {"SKIPLOCK_JOB_RETENTION_DAYS": "30", "SKIPLOCK_TEST_JOB_RETENTION_SECONDS": "5"}
    assert load_settings(both).job_retention_seconds() == 5
    for bad in ("abc", "0", "-1", "1.5", "36501"):
        with pytest.raises(ConfigError, match="SKIPLOCK_JOB_RETENTION_DAYS"):
            load_settings({"SKIPLOCK_JOB_RETENTION_DAYS": bad})
    line = one_line_error(
        run_cli("worker", env={"DATABASE_URL": database_url, "SKIPLOCK_JOB_RETENTION_DAYS": "week"})
    )
    assert line == (
        "skiplock: SKIPLOCK_JOB_RETENTION_DAYS='week' is not a whole number of days between 1 "
        "and 36500 (unset: keep everything)"
    )


@pytest.mark.slow
def test_claims_keep_running_while_a_worker_purges_100000_old_jobs(
    conn: Conn, company_id: uuid.UUID, database_url: str, tmp_path: Path
) -> None:
    insert_finished(conn, company_id, 100_000, days_ago=2)
    conn.execute("ANALYZE skiplock.content_jobs")

    def old_left() -> int:
        row = conn.execute(
            "SELECT count(*) FROM content_jobs WHERE finished_at < now() - interval '1 day'"
        ).fetchone()
        assert row is not None
        return int(row[0])

    # A real worker process purges at start (retention: one hour) while it claims.
    worker = start_worker_process(
        database_url, tmp_path, env={"SKIPLOCK_TEST_JOB_RETENTION_SECONDS": "3600"}
    )
    during = 0
    try:
        while (left := old_left()) > 0:
            job_id = enqueue(conn, company_id, "noop")
            wait_for(status_is(conn, job_id, "done"), timeout=30)
            if old_left() > 0 and left < 100_000:
                during += 1  # claimed, run and finished while the purge was under way
        wait_for(lambda: "deleted 100000 finished job(s)" in worker.log(), timeout=30)
    finally:
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0
    print(f"jobs done during the purge: {during}")
    assert during >= 3, worker.log()[-2000:]
    orphaned_events = conn.execute(
        "SELECT count(*) FROM content_job_events e "
        "WHERE NOT EXISTS (SELECT 1 FROM content_jobs j WHERE j.id = e.job_id)"
    ).fetchone()
    assert orphaned_events == (0,)


async def test_retention_deletes_stored_bytes_on_every_backend(
    backend: Backend, conn: Conn, company_id: uuid.UUID, pool: Any
) -> None:
    """Each asset's bytes are deleted through the backend its row names: local files, S3
    objects (checked with boto3) and Postgres chunks (checked in SQL)."""
    provider = backend.storage.provider
    kept_key, purged_key = key("kept.bin"), key("purged.bin")
    for object_key, finished_days in ((kept_key, 1), (purged_key, 9)):
        stored = await backend.storage.put(
            object_key, bytes_chunks(pattern(3000)), max_bytes=1 << 20
        )
        conn.execute(
            "WITH asset AS ("
            " INSERT INTO assets (company_id, provider, object_key, content_type, byte_size,"
            " sha256) VALUES (%(company)s, %(provider)s, %(key)s, 'application/octet-stream',"
            " %(size)s, %(sha256)s) RETURNING id)"
            " INSERT INTO content_jobs (company_id, job_type, status, result_asset_id,"
            " created_at, finished_at)"
            " SELECT %(company)s, 'noop', 'done', id, now() - make_interval(days => %(days)s),"
            " now() - make_interval(days => %(days)s) FROM asset",
            {
                "company": company_id,
                "provider": provider,
                "key": object_key,
                "size": stored.byte_size,
                "sha256": stored.sha256,
                "days": finished_days,
            },
        )
    assert sorted(backend.stored()) == sorted([kept_key, purged_key])

    lookup = retention.storage_lookup(backend.storage)
    purged = await retention.run_once(pool, 7 * DAY, lookup)

    assert (purged.jobs, purged.objects, purged.objects_left) == (1, 1, 0)
    assert backend.stored() == [kept_key]
    assert conn.execute("SELECT object_key FROM assets").fetchall() == [(kept_key,)]
