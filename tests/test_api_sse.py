"""Live SSE over real HTTP with a real worker and real Postgres (SPEC §4)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api_harness import Api, running_api
from skiplock.api import streams
from sse_client import open_stream, until
from worker_harness import running_worker


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(database_url, tmp_path / "storage") as running:
        yield running


def job_stream(api: Api, job_id: str) -> str:
    return f"{api.acme.prefix}/content-jobs/{job_id}/events"


async def test_job_stream_sends_status_then_events_until_done(api: Api, tmp_path: Path) -> None:
    job_id = await api.submit("echo", input={"text": "live"})
    async with open_stream(api.client, job_stream(api, job_id), headers=api.acme.headers) as stream:
        assert stream.status_code == 200
        await until(lambda: stream.frames)
        status = stream.frames[0]
        assert status.event == "status" and status.id is None
        assert status.data["id"] == job_id and status.data["status"] == "queued"
        async with running_worker(api.database_url, tmp_path / "storage"):
            await asyncio.wait_for(stream.ended.wait(), 10)
    types = [f.event for f in stream.events()]
    assert types == ["content_job.running", "content_job.progress", "content_job.done"]
    done = stream.events()[-1]
    assert done.data["jobId"] == job_id and done.data["companyId"] == str(api.acme.company_id)
    assert done.data["status"] == "done" and done.data["assetId"]
    assert done.data["eventId"] == int(done.id or 0) and done.data["createdAt"].endswith("Z")
    assert stream.events()[1].data["progress"] == {"fraction": 0.5, "message": "half way"}


async def test_job_stream_of_a_finished_job_sends_status_and_ends(api: Api) -> None:
    job_id = await api.submit("noop")
    await api.client.post(
        f"{api.acme.prefix}/content-jobs/{job_id}/cancel", headers=api.acme.headers
    )
    async with open_stream(api.client, job_stream(api, job_id), headers=api.acme.headers) as stream:
        await asyncio.wait_for(stream.ended.wait(), 5)
    assert [f.event for f in stream.frames] == ["status"]
    assert stream.frames[0].data["status"] == "canceled"


async def test_company_stream_carries_only_its_own_company(api: Api) -> None:
    url = f"{api.acme.prefix}/events"
    async with open_stream(api.client, url, headers=api.acme.headers) as stream:
        mine = await api.submit("noop")
        await api.submit("noop", tenant=api.other)
        api.sql(
            "UPDATE skiplock.content_jobs SET status = 'canceled' WHERE id = %s", (uuid.UUID(mine),)
        )
        await until(lambda: len(stream.events()) == 2)
        await asyncio.sleep(0.3)
    assert [(f.event, f.data["jobId"]) for f in stream.events()] == [
        ("content_job.queued", mine),
        ("content_job.canceled", mine),
    ]
    assert {f.data["companyId"] for f in stream.events()} == {str(api.acme.company_id)}


async def test_streams_check_auth_in_order_and_accept_a_stream_token(api: Api) -> None:
    job_id = await api.submit("noop")
    url = f"{api.acme.prefix}/events"
    assert (await api.client.get(url)).status_code == 401
    assert (await api.client.get(url, headers=api.other.headers)).status_code == 403
    bad_job = f"{api.acme.prefix}/content-jobs/nope/events"
    assert (await api.client.get(bad_job, headers=api.acme.headers)).status_code == 404
    other_job = await api.submit("noop", tenant=api.other)
    assert (
        await api.client.get(job_stream(api, other_job), headers=api.acme.headers)
    ).status_code == 404
    token = (
        await api.client.post(f"{api.acme.prefix}/stream-tokens", headers=api.acme.headers)
    ).json()["token"]
    theirs = (
        await api.client.post(f"{api.other.prefix}/stream-tokens", headers=api.other.headers)
    ).json()["token"]
    assert (await api.client.get(url, params={"token": theirs})).status_code == 403
    async with open_stream(api.client, job_stream(api, job_id), params={"token": token}) as stream:
        await until(lambda: stream.frames)
    assert stream.frames[0].event == "status"


async def test_resume_with_last_event_id_has_no_gap_and_no_duplicate(api: Api) -> None:
    url = f"{api.acme.prefix}/events"
    first_ids = [await api.submit("noop") for _ in range(3)]
    async with open_stream(api.client, url, headers=api.acme.headers) as live:
        for job_id in first_ids:
            api.sql(
                "UPDATE skiplock.content_jobs SET status = 'canceled' WHERE id = %s",
                (uuid.UUID(job_id),),
            )
        # (A queued event committed just before the stream opened may come too: a stream
        # without Last-Event-ID starts at about "now", never later.)
        await until(lambda: len(live.events("content_job.canceled")) == 3)
    seen = [int(f.id or 0) for f in live.events("content_job.canceled")]
    # While disconnected: more changes.
    later = [await api.submit("noop") for _ in range(2)]
    # Resume after the second event: the third, then the two new jobs' events, then live.
    headers = {**api.acme.headers, "Last-Event-ID": str(seen[1])}
    async with open_stream(api.client, url, headers=headers) as resumed:
        await until(lambda: len(resumed.events()) == 3)
        extra = await api.submit("noop")
        await until(lambda: len(resumed.events()) == 4)
        await asyncio.sleep(0.3)
    assert resumed.ids()[0] == seen[2]
    assert [f.data["jobId"] for f in resumed.events()[1:]] == [*later, extra]
    assert len(set(resumed.ids())) == len(resumed.ids())
    # The query-string form works too.
    async with open_stream(
        api.client, url, headers=api.acme.headers, params={"lastEventId": str(seen[1])}
    ) as again:
        await until(lambda: len(again.events()) >= 4)


async def test_out_of_order_commits_are_delivered_once_in_order(api: Api) -> None:
    """Two writers: the one holding the lower event id commits last. A live client gets both
    once, in (xid, id) order, and a client resuming from the first gets exactly the second."""
    a, b = await api.submit("noop"), await api.submit("noop")
    url = f"{api.acme.prefix}/events"
    async with open_stream(api.client, url, headers=api.acme.headers) as live:
        first = await psycopg.AsyncConnection.connect(api.database_url)
        second = await psycopg.AsyncConnection.connect(api.database_url)
        async with first, second:
            await first.execute(
                "UPDATE skiplock.content_jobs SET status = 'canceled' WHERE id = %s",
                (uuid.UUID(a),),
            )
            await second.execute(
                "UPDATE skiplock.content_jobs SET status = 'canceled' WHERE id = %s",
                (uuid.UUID(b),),
            )
            await second.commit()  # the higher id commits first
            await asyncio.sleep(0.3)
            assert live.events("content_job.canceled") == []  # held back below the horizon
            await first.commit()
        await until(lambda: len(live.events("content_job.canceled")) == 2)
        await asyncio.sleep(0.2)
    cancels = live.events("content_job.canceled")
    assert [f.data["jobId"] for f in cancels] == [a, b]
    assert len(set(live.ids())) == len(live.ids())
    headers = {**api.acme.headers, "Last-Event-ID": cancels[0].id or ""}
    async with open_stream(api.client, url, headers=headers) as resumed:
        await until(lambda: len(resumed.events()) == 1)
        await asyncio.sleep(0.2)
    assert [f.id for f in resumed.events()] == [cancels[1].id]


async def test_unknown_last_event_id_gets_reset_then_the_stream(api: Api) -> None:
    url = f"{api.acme.prefix}/events"
    headers = {**api.acme.headers, "Last-Event-ID": "999999"}
    async with open_stream(api.client, url, headers=headers) as stream:
        await until(lambda: stream.frames)
        job_id = await api.submit("noop")
        await until(lambda: len(stream.events()) == 1)
    assert stream.frames[0].event == "reset" and stream.frames[0].id is None
    assert stream.frames[0].data == {"lastEventId": "999999"}
    assert stream.events()[0].data["jobId"] == job_id


async def test_a_job_stream_with_an_unknown_last_event_id_sends_reset_then_status_then_events(
    api: Api,
) -> None:
    """SPEC §4: `event: reset` first, "and then the stream as if new": status, then events."""
    job_id = await api.submit("block")
    other_job = await api.submit("noop")
    foreign = api.sql(  # an event that exists, but of another job: names nothing of this stream
        "SELECT id FROM skiplock.content_job_events WHERE job_id = %s", (uuid.UUID(other_job),)
    )[0][0]
    url = f"{api.acme.prefix}/content-jobs/{job_id}/events"
    for last_event_id in ("999999", str(foreign), "not-a-number"):
        headers = {**api.acme.headers, "Last-Event-ID": last_event_id}
        async with open_stream(api.client, url, headers=headers) as stream:
            await until(lambda: len(stream.frames) >= 2)
            api.sql(
                "UPDATE skiplock.content_jobs SET status = 'canceled' "
                "WHERE id = %s AND status = 'queued'",
                (uuid.UUID(job_id),),
            )
            await until(lambda: stream.frames[-1].event == "content_job.canceled")
        kinds = [f.event for f in stream.frames]
        assert kinds == ["reset", "status", "content_job.canceled"], (last_event_id, kinds)
        assert stream.frames[0].data == {"lastEventId": last_event_id}
        assert stream.frames[1].data["id"] == job_id
        await api.client.post(
            f"{api.acme.prefix}/content-jobs/{job_id}/retry", headers=api.acme.headers
        )


async def test_a_change_made_in_psql_appears_with_reason_manual(api: Api) -> None:
    job_id = await api.submit("noop")
    api.sql(
        "UPDATE skiplock.content_jobs SET status = 'canceled' WHERE id = %s", (uuid.UUID(job_id),)
    )
    async with open_stream(
        api.client, f"{api.acme.prefix}/events", headers=api.acme.headers
    ) as stream:
        api.sql(
            "UPDATE skiplock.content_jobs SET status = 'queued' WHERE id = %s", (uuid.UUID(job_id),)
        )
        await until(lambda: [f for f in stream.events() if "reason" in f.data])
    requeued = [f for f in stream.events() if "reason" in f.data]
    assert requeued[0].event == "content_job.queued" and requeued[0].data["reason"] == "manual"


async def test_idle_stream_sends_comments(api: Api, monkeypatch: Any) -> None:
    monkeypatch.setattr(streams, "HEARTBEAT_SECONDS", 0.2)
    async with open_stream(
        api.client, f"{api.acme.prefix}/events", headers=api.acme.headers
    ) as stream:
        await until(lambda: stream.comments >= 2, timeout=5)


def _connections(api: Api) -> int:
    rows = api.sql(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    return int(rows[0][0])


@pytest.mark.slow
async def test_500_clients_all_get_every_event_on_constant_connections(api: Api) -> None:
    before = _connections(api)
    limits = httpx.Limits(max_connections=600, max_keepalive_connections=600)
    async with httpx.AsyncClient(base_url=api.base_url, limits=limits, timeout=60) as many:
        url = f"{api.acme.prefix}/events"
        async with contextlib_all(
            [open_stream(many, url, headers=api.acme.headers) for _ in range(500)]
        ) as streams_:
            assert api.app_state().notifier.subscriber_count == 500
            during = _connections(api)
            api.sql(
                "INSERT INTO skiplock.content_jobs (company_id, job_type) "
                "SELECT %s, 'noop' FROM generate_series(1, 50)",
                (api.acme.company_id,),
            )
            await until(lambda: all(len(s.events()) == 50 for s in streams_), timeout=60)
            ids = streams_[0].ids()
            assert all(s.ids() == ids for s in streams_)
        assert during <= before  # one key lookup for all 500; no connection per client
    await until(lambda: api.app_state().notifier.subscriber_count == 0)


@pytest.mark.slow
async def test_a_stalled_client_is_dropped_and_never_delays_the_others(
    api: Api, monkeypatch: Any
) -> None:
    """A client that stops reading fills its socket buffers, then its queue: it is dropped,
    while the other client gets all 20,000 events."""
    url = f"{api.acme.prefix}/events"
    stalled = httpx.AsyncClient(base_url=api.base_url, timeout=60)
    async with stalled.stream("GET", url, headers=api.acme.headers) as never_read:
        assert never_read.status_code == 200
        async with open_stream(api.client, url, headers=api.acme.headers) as reader:
            assert api.app_state().notifier.subscriber_count == 2
            api.sql(
                "INSERT INTO skiplock.content_jobs (company_id, job_type) "
                "SELECT %s, 'noop' FROM generate_series(1, 20000)",
                (api.acme.company_id,),
            )
            await until(lambda: len(reader.events()) == 20_000, timeout=60)
            await until(lambda: api.app_state().notifier.subscriber_count == 1, timeout=10)
    await stalled.aclose()


class contextlib_all:
    """Enter many async context managers at once (concurrently), exit them all."""

    def __init__(self, managers: list[Any]) -> None:
        self.managers = managers

    async def __aenter__(self) -> list[Any]:
        return list(await asyncio.gather(*(m.__aenter__() for m in self.managers)))

    async def __aexit__(self, *exc: Any) -> None:
        await asyncio.gather(*(m.__aexit__(None, None, None) for m in self.managers))
