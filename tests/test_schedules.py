"""Schedules (SPEC §7): the routes, real worker processes making one job per tick, missed
ticks collapsing, cron in a time zone across daylight saving time, and every invalid body."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from api_harness import Api, running_api
from skiplock import db
from skiplock.schedules import Rule
from skiplock.worker.schedules import ScheduleTicker
from webhook_receiver import running_receiver
from worker_harness import await_for, running_worker, start_worker_process


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(database_url, tmp_path / "storage", webhook_allow_private=True) as a:
        yield a


async def create_schedule(api: Api, **body: Any) -> dict[str, Any]:
    response = await api.client.post(
        f"{api.acme.prefix}/schedules", json={"jobType": "noop", **body}, headers=api.acme.headers
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def scheduled_jobs(api: Api, schedule_id: str) -> list[tuple[str, str]]:
    """(idempotency key, status) of the schedule's jobs, oldest tick first."""
    rows = api.sql(
        "SELECT idempotency_key, status FROM skiplock.content_jobs "
        "WHERE idempotency_key LIKE %s ORDER BY idempotency_key",
        (f"schedule:{schedule_id}:%",),
    )
    return [(key, status) for key, status in rows]


# ------------------------------------------------------------------------------------------
# The routes
# ------------------------------------------------------------------------------------------


async def test_a_schedule_is_created_listed_and_deleted(api: Api) -> None:
    before = datetime.now(UTC)
    made = await create_schedule(
        api,
        input={"n": 1},
        intervalSeconds=3600,
        sourceTaskId="nightly",
        priority=5,
    )
    assert set(made) == {
        "id",
        "jobType",
        "input",
        "cron",
        "intervalSeconds",
        "timezone",
        "sourceTaskId",
        "priority",
        "nextRunAt",
        "createdAt",
    }
    assert (made["jobType"], made["input"], made["cron"], made["intervalSeconds"]) == (
        "noop",
        {"n": 1},
        None,
        3600,
    )
    assert (made["timezone"], made["sourceTaskId"], made["priority"]) == ("UTC", "nightly", 5)
    next_run = datetime.fromisoformat(made["nextRunAt"])
    assert before + timedelta(seconds=3590) < next_run < before + timedelta(seconds=3700)
    path = f"{api.acme.prefix}/schedules"
    listed = await api.client.get(path, headers=api.acme.headers)
    assert listed.json() == {"items": [made]}
    other = await api.client.get(f"{api.other.prefix}/schedules", headers=api.other.headers)
    assert other.json() == {"items": []}
    gone = await api.client.delete(f"{path}/{made['id']}", headers=api.acme.headers)
    assert gone.status_code == 204 and gone.content == b""
    assert (await api.client.get(path, headers=api.acme.headers)).json() == {"items": []}
    again = await api.client.delete(f"{path}/{made['id']}", headers=api.acme.headers)
    assert again.status_code == 404


async def test_a_cron_schedules_next_run_is_read_in_its_time_zone(api: Api) -> None:
    made = await create_schedule(api, cron="0 9 * * *", timezone="Europe/Berlin")
    assert (made["cron"], made["intervalSeconds"], made["timezone"]) == (
        "0 9 * * *",
        None,
        "Europe/Berlin",
    )
    local = datetime.fromisoformat(made["nextRunAt"]).astimezone(ZoneInfo("Europe/Berlin"))
    assert (local.hour, local.minute) == (9, 0)
    assert made["nextRunAt"].endswith("Z")


@pytest.mark.parametrize(
    "body",
    [
        {"intervalSeconds": 60},  # no jobType
        {"jobType": "nope", "intervalSeconds": 60},
        {"jobType": 7, "intervalSeconds": 60},
        {"jobType": "noop"},  # neither cron nor intervalSeconds
        {"jobType": "noop", "cron": None, "intervalSeconds": None},
        {"jobType": "noop", "cron": "* * * * *", "intervalSeconds": 60},  # both
        {"jobType": "noop", "intervalSeconds": 0},
        {"jobType": "noop", "intervalSeconds": 31_536_001},
        {"jobType": "noop", "intervalSeconds": 1.5},
        {"jobType": "noop", "intervalSeconds": "60"},
        {"jobType": "noop", "intervalSeconds": True},
        {"jobType": "noop", "cron": "* * * *"},
        {"jobType": "noop", "cron": "* * * * * *"},  # seconds field: not 5 standard fields
        {"jobType": "noop", "cron": "61 * * * *"},
        {"jobType": "noop", "cron": "0 0 31 2 *"},  # never
        {"jobType": "noop", "cron": "@daily"},
        {"jobType": "noop", "cron": 5},
        {"jobType": "noop", "cron": "* " * 150},
        {"jobType": "noop", "cron": "0 9 * * *", "timezone": "Mars/Olympus_Mons"},
        {"jobType": "noop", "cron": "0 9 * * *", "timezone": "../../etc/passwd"},
        {"jobType": "noop", "cron": "0 9 * * *", "timezone": "localtime"},
        {"jobType": "noop", "cron": "0 9 * * *", "timezone": ""},
        {"jobType": "noop", "cron": "0 9 * * *", "timezone": 1},
        {"jobType": "noop", "intervalSeconds": 60, "input": []},
        {"jobType": "noop", "intervalSeconds": 60, "input": "x"},
        {"jobType": "echo", "intervalSeconds": 60, "input": {"text": "\u0000"}},
        {"jobType": "noop", "intervalSeconds": 60, "priority": 1001},
        {"jobType": "noop", "intervalSeconds": 60, "priority": "high"},
        {"jobType": "noop", "intervalSeconds": 60, "sourceTaskId": 5},
        {"jobType": "noop", "intervalSeconds": 60, "sourceTaskId": "x" * 1001},
        {"jobType": "noop", "intervalSeconds": 60, "runAt": "2030-01-01T00:00:00Z"},
        {"jobType": "noop", "intervalSeconds": 60, "maxAttempts": 3},
        [],
        "noop",
    ],
)
async def test_every_invalid_schedule_body_is_422(api: Api, body: Any) -> None:
    response = await api.client.post(
        f"{api.acme.prefix}/schedules", json=body, headers=api.acme.headers
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid"
    assert api.sql("SELECT count(*) FROM skiplock.schedules") == [(0,)]


async def test_the_input_is_checked_against_the_types_schema_as_a_submit_is(api: Api) -> None:
    # `diagram` needs input.source: the same message a submit would get.
    body = {"jobType": "diagram", "input": {"format": "svg"}}
    submit = await api.client.post(
        f"{api.acme.prefix}/content-jobs", json=body, headers=api.acme.headers
    )
    schedule = await api.client.post(
        f"{api.acme.prefix}/schedules", json={**body, "cron": "0 * * * *"}, headers=api.acme.headers
    )
    assert submit.status_code == schedule.status_code == 422
    assert submit.json()["error"]["message"] == schedule.json()["error"]["message"]


async def test_schedule_routes_check_in_spec_order(api: Api) -> None:
    made = await create_schedule(api, intervalSeconds=60)
    post, own = f"{api.acme.prefix}/schedules", f"{api.acme.prefix}/schedules/{made['id']}"
    checks = [
        ("POST", post, {}, None, 401),
        ("POST", "/companies/nope/schedules", api.acme.headers, None, 404),
        ("POST", post, api.other.headers, None, 403),
        ("POST", post, {**api.acme.headers, "Content-Type": "text/plain"}, b"{}", 415),
        ("POST", post, {**api.acme.headers, "Content-Type": "application/json"}, b"[1,", 400),
        ("GET", post, api.other.headers, None, 403),
        ("DELETE", f"{post}/nope", api.acme.headers, None, 404),
        ("DELETE", own, api.other.headers, None, 403),
        ("DELETE", f"{api.other.prefix}/schedules/{made['id']}", api.other.headers, None, 404),
    ]
    for method, path, headers, content, status in checks:
        response = await api.client.request(method, path, headers=headers, content=content)
        assert response.status_code == status, (method, path, response.text)
    assert api.sql("SELECT count(*) FROM skiplock.schedules") == [(1,)]


async def test_a_company_has_at_most_100_schedules(api: Api) -> None:
    from skiplock.api.schedules import MAX_SCHEDULES_PER_COMPANY

    made = await asyncio.gather(
        *(
            api.client.post(
                f"{api.acme.prefix}/schedules",
                json={"jobType": "noop", "intervalSeconds": 3600},
                headers=api.acme.headers,
            )
            for _ in range(MAX_SCHEDULES_PER_COMPANY + 3)
        )
    )
    assert sorted(r.status_code for r in made) == [201] * MAX_SCHEDULES_PER_COMPANY + [409] * 3


# ------------------------------------------------------------------------------------------
# Ticks
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_two_worker_processes_make_one_job_per_tick_and_deleting_stops_it(
    api: Api, tmp_path: Path
) -> None:
    schedule = await create_schedule(api, intervalSeconds=2, sourceTaskId="every-2s")
    workers = [
        await asyncio.to_thread(start_worker_process, api.database_url, tmp_path) for _ in range(2)
    ]
    try:
        await await_for(lambda: len(scheduled_jobs(api, schedule["id"])) >= 4, 30)
        path = f"{api.acme.prefix}/schedules/{schedule['id']}"
        assert (await api.client.delete(path, headers=api.acme.headers)).status_code == 204
        made = scheduled_jobs(api, schedule["id"])
        # Two ticks and the poll go by: no job after the delete.
        await asyncio.sleep(5)
        assert scheduled_jobs(api, schedule["id"])[: len(made)] == made
        assert len(scheduled_jobs(api, schedule["id"])) == len(made)
        await await_for(lambda: {s for _, s in scheduled_jobs(api, schedule["id"])} == {"done"})
    finally:
        for worker in workers:
            worker.signal(signal.SIGTERM)
        codes = [await asyncio.to_thread(w.wait) for w in workers]
    assert codes == [0, 0]
    ticks = [_tick(key) for key, _ in made]
    assert len(set(ticks)) == len(ticks)  # one job per tick, never two
    first = datetime.fromisoformat(schedule["nextRunAt"])
    for tick in ticks:  # every job is one of the schedule's ticks: first + 2 s * k
        assert (tick - first).total_seconds() % 2 == 0
    sources = api.sql(
        "SELECT DISTINCT source_task_id, priority FROM skiplock.content_jobs "
        "WHERE idempotency_key LIKE 'schedule:%%'"
    )
    assert sources == [("every-2s", 0)]


def _tick(key: str) -> datetime:
    """The tick in an idempotency key schedule:<id>:<RFC 3339 tick>."""
    return datetime.fromisoformat(key.split(":", 2)[2].replace("Z", "+00:00"))


async def test_ticks_missed_while_no_worker_ran_collapse_into_one_job(
    api: Api, database_url: str
) -> None:
    every_minute = await create_schedule(api, intervalSeconds=60)
    every_5_min = await create_schedule(api, cron="*/5 * * * *", timezone="Asia/Kolkata")
    # As if no worker ran for a day and a half.
    api.sql("UPDATE skiplock.schedules SET next_run_at = next_run_at - interval '36 hours'")
    (old_minute,) = api.sql(
        "SELECT next_run_at FROM skiplock.schedules WHERE id = %s",
        (uuid.UUID(every_minute["id"]),),
    )[0]
    pool = await db.open_pool(database_url)
    try:
        assert await ScheduleTicker(pool).run_once() == 2
        assert await ScheduleTicker(pool).run_once() == 0  # nothing due any more
    finally:
        await pool.close()
    now = api.sql("SELECT now()")[0][0]
    for schedule in (every_minute, every_5_min):
        jobs = scheduled_jobs(api, schedule["id"])
        assert len(jobs) == 1, jobs
    [(minute_key, _)] = scheduled_jobs(api, every_minute["id"])
    minute_tick = _tick(minute_key)
    assert now - timedelta(seconds=60) < minute_tick <= now  # the latest missed tick
    assert (minute_tick - old_minute).total_seconds() % 60 == 0
    [(cron_key, _)] = scheduled_jobs(api, every_5_min["id"])
    cron_tick = _tick(cron_key)
    assert now - timedelta(minutes=5) < cron_tick <= now and cron_tick.minute % 5 == 0
    rows = api.sql(
        "SELECT id, next_run_at > now(), last_run_at, last_job_id IS NOT NULL "
        "FROM skiplock.schedules ORDER BY created_at"
    )
    assert [(str(r[0]), r[1], r[2], r[3]) for r in rows] == [
        (every_minute["id"], True, minute_tick, True),
        (every_5_min["id"], True, cron_tick, True),
    ]


async def test_tickers_racing_on_one_due_schedule_make_one_job(api: Api, database_url: str) -> None:
    schedules = [await create_schedule(api, intervalSeconds=3600) for _ in range(20)]
    api.sql("UPDATE skiplock.schedules SET next_run_at = now() - interval '1 second'")
    pools = [await db.open_pool(database_url) for _ in range(4)]
    try:
        due = await asyncio.gather(*(ScheduleTicker(pool).run_once() for pool in pools * 3))
    finally:
        for pool in pools:
            await pool.close()
    assert sum(due) == 20
    for schedule in schedules:
        assert len(scheduled_jobs(api, schedule["id"])) == 1


async def test_a_scheduled_job_is_an_ordinary_job_with_events_and_webhooks(
    api: Api, tmp_path: Path
) -> None:
    async with running_receiver() as receiver:
        response = await api.client.post(
            f"{api.acme.prefix}/webhooks", json={"url": receiver.url}, headers=api.acme.headers
        )
        assert response.status_code == 201
        schedule = await create_schedule(
            api, jobType="echo", input={"text": "tick"}, intervalSeconds=1, priority=-3
        )
        async with running_worker(api.database_url, tmp_path / "storage"):
            await await_for(lambda: receiver.requests, 30)
        path = f"{api.acme.prefix}/schedules/{schedule['id']}"
        assert (await api.client.delete(path, headers=api.acme.headers)).status_code == 204
    body = json.loads(receiver.requests[0].body)
    job = await api.client.get(
        f"{api.acme.prefix}/content-jobs/{body['jobId']}", headers=api.acme.headers
    )
    assert job.json()["status"] == "done" and body["type"] == "content_job.done"
    assert uuid.UUID(body["jobId"]).version == 7  # time-ordered (sql/0010)
    assert (job.json()["jobType"], job.json()["input"], job.json()["priority"]) == (
        "echo",
        {"text": "tick"},
        -3,
    )
    events = api.sql(
        "SELECT type FROM skiplock.content_job_events WHERE job_id = %s ORDER BY xid, id",
        (uuid.UUID(body["jobId"]),),
    )
    assert [t for (t,) in events][:2] == ["content_job.queued", "content_job.running"]


async def test_a_tick_that_would_pass_max_queued_is_skipped(api: Api, database_url: str) -> None:
    api.sql("UPDATE skiplock.companies SET max_queued = 1 WHERE id = %s", (api.acme.company_id,))
    await api.submit("noop", runAt="2999-01-01T00:00:00Z")  # the one queued job allowed
    schedule = await create_schedule(api, intervalSeconds=60)
    api.sql("UPDATE skiplock.schedules SET next_run_at = now() - interval '1 second'")
    pool = await db.open_pool(database_url)
    try:
        assert await ScheduleTicker(pool).run_once() == 1
    finally:
        await pool.close()
    assert scheduled_jobs(api, schedule["id"]) == []
    moved_on = api.sql("SELECT next_run_at > now(), last_job_id FROM skiplock.schedules")
    assert moved_on == [(True, None)]


# ------------------------------------------------------------------------------------------
# The decisions, pure
# ------------------------------------------------------------------------------------------


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("cron", "zone", "now", "expected"),
    [
        # 09:00 in Berlin is 08:00 UTC in winter (CET) and 07:00 UTC in summer (CEST).
        ("0 9 * * *", "Europe/Berlin", utc(2026, 3, 28, 8, 0), utc(2026, 3, 29, 7, 0)),
        ("0 9 * * *", "Europe/Berlin", utc(2026, 10, 24, 7, 0), utc(2026, 10, 25, 8, 0)),
        # 02:30 does not exist in New York on 2026-03-08: it runs at 03:00 EDT (Debian cron).
        ("30 2 * * *", "America/New_York", utc(2026, 3, 8, 0, 0), utc(2026, 3, 8, 7, 0)),
        # 01:30 happens twice on 2026-11-01: it runs once, at the first (EDT, 05:30 UTC) ...
        ("30 1 * * *", "America/New_York", utc(2026, 11, 1, 0, 0), utc(2026, 11, 1, 5, 30)),
        # ... and next on 2026-11-02 at 01:30 EST, not at the repeated 01:30.
        ("30 1 * * *", "America/New_York", utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)),
        # Every 30 minutes walks the repeated hour in real time.
        ("*/30 * * * *", "Europe/Berlin", utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 0)),
        ("*/30 * * * *", "Europe/Berlin", utc(2026, 10, 25, 1, 0), utc(2026, 10, 25, 1, 30)),
    ],
)
def test_cron_next_run_in_a_time_zone_across_daylight_saving_time(
    cron: str, zone: str, now: datetime, expected: datetime
) -> None:
    assert Rule(cron=cron, timezone=zone).first_run(now) == expected


def test_missed_ticks_plan_the_latest_and_the_next() -> None:
    rule = Rule(interval_seconds=10)
    due = utc(2026, 1, 1, 0, 0, 0)
    assert rule.plan_tick(due, due) == (due, due + timedelta(seconds=10))
    tick, after = rule.plan_tick(due, due + timedelta(seconds=95))
    assert (tick, after) == (due + timedelta(seconds=90), due + timedelta(seconds=100))
    daily = Rule(cron="0 6 * * *", timezone="Europe/Berlin")
    due = utc(2026, 3, 20, 5, 0)  # 06:00 CET
    tick, after = daily.plan_tick(due, utc(2026, 4, 2, 12, 0))
    assert (tick, after) == (utc(2026, 4, 2, 4, 0), utc(2026, 4, 3, 4, 0))  # 06:00 CEST
