"""Completion webhooks (SPEC §7) end to end: the real API, real `skiplock worker` processes,
a real receiver on 127.0.0.1 and Postgres. Signatures are checked with the `standardwebhooks`
package (the specification's reference library), never with skiplock's own code."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from api_harness import Api, Tenant, running_api
from skiplock.worker.webhooks import PER_WEBHOOK
from sse_client import Frame, Stream, open_stream
from webhook_receiver import HANG, Received, running_receiver
from worker_harness import WorkerProcess, await_for, start_worker_process

ALLOW_PRIVATE = {"SKIPLOCK_WEBHOOK_ALLOW_PRIVATE": "true"}
FAR_FUTURE = "2999-01-01T00:00:00Z"


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(database_url, tmp_path / "storage", webhook_allow_private=True) as a:
        yield a


async def create_webhook(
    api: Api, url: str, events: list[str] | None = None, tenant: Tenant | None = None
) -> dict[str, Any]:
    tenant = tenant or api.acme
    body: dict[str, Any] = {"url": url} if events is None else {"url": url, "events": events}
    response = await api.client.post(f"{tenant.prefix}/webhooks", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def deliveries(api: Api, webhook_id: str, **params: Any) -> list[dict[str, Any]]:
    response = await api.client.get(
        f"{api.acme.prefix}/webhooks/{webhook_id}/deliveries",
        params=params,
        headers=api.acme.headers,
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


@contextlib.asynccontextmanager
async def worker_process(
    api: Api, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[WorkerProcess]:
    """A real `skiplock worker`, allowed to deliver to 127.0.0.1 unless env says otherwise."""
    worker = await asyncio.to_thread(
        start_worker_process,
        api.database_url,
        tmp_path,
        *args,
        env=ALLOW_PRIVATE if env is None else env,
    )
    try:
        yield worker
    finally:
        if worker.process.poll() is None:
            worker.signal(signal.SIGTERM)
            assert await asyncio.to_thread(worker.wait) == 0, worker.log()[-3000:]


async def cancel(api: Api, job_id: str) -> None:
    path = f"{api.acme.prefix}/content-jobs/{job_id}/cancel"
    response = await api.client.post(path, headers=api.acme.headers)
    assert response.status_code == 200, response.text


def verified(secret: str, received: Received) -> dict[str, Any]:
    """The body, checked by the reference library: raises unless the signature holds."""
    payload: dict[str, Any] = Webhook(secret).verify(received.body, received.headers)
    return payload


def frame_of(stream: Stream, event_id: int) -> Frame | None:
    return next((f for f in stream.events() if f.id == str(event_id)), None)


# ------------------------------------------------------------------------------------------
# Delivered, signed, byte for byte the event's SSE data
# ------------------------------------------------------------------------------------------


async def test_done_failed_and_canceled_deliver_the_events_sse_data_signed(
    api: Api, tmp_path: Path
) -> None:
    async with running_receiver() as receiver:
        hook = await create_webhook(api, receiver.url)
        url = f"{api.acme.prefix}/events"
        async with (
            open_stream(api.client, url, headers=api.acme.headers) as stream,
            worker_process(api, tmp_path),
        ):
            done = await api.submit("noop")
            failed = await api.submit("doomed")
            canceled = await api.submit("noop", runAt=FAR_FUTURE)
            await cancel(api, canceled)
            await await_for(lambda: len(receiver.requests) >= 3, 30)
            payloads = [verified(hook["secret"], r) for r in receiver.requests]
            await await_for(lambda: all(frame_of(stream, p["eventId"]) for p in payloads), 10)

        by_job = {p["jobId"]: p for p in payloads}
        assert {job: by_job[job]["type"] for job in (done, failed, canceled)} == {
            done: "content_job.done",
            failed: "content_job.failed",
            canceled: "content_job.canceled",
        }
        assert by_job[failed]["errorMessage"] == "this input can never work"
        for received, payload in zip(receiver.requests, payloads, strict=True):
            frame = frame_of(stream, payload["eventId"])
            assert frame is not None
            assert received.body == frame.raw.encode()  # byte for byte the SSE data line
            assert received.headers["content-type"] == "application/json"
            assert abs(int(received.headers["webhook-timestamp"]) - time.time()) < 120
            tampered = received.body.replace(b'"status":"', b'"status":"x', 1)
            with pytest.raises(WebhookVerificationError):
                Webhook(hook["secret"]).verify(tampered, received.headers)
            other_id = {**received.headers, "webhook-id": str(uuid.uuid4())}
            with pytest.raises(WebhookVerificationError):
                Webhook(hook["secret"]).verify(received.body, other_id)

        items = await deliveries(api, hook["id"])
        assert len(items) == 3
        assert {i["id"] for i in items} == {r.headers["webhook-id"] for r in receiver.requests}
        for item in items:
            assert item["status"] == "delivered" and item["attempts"] == 1
            assert item["lastStatusCode"] == 200 and item["lastError"] is None
            assert item["nextAttemptAt"] is None and item["deliveredAt"] is not None
        assert [i["createdAt"] for i in items] == sorted(
            (i["createdAt"] for i in items), reverse=True
        )


async def test_a_webhook_gets_only_the_event_types_it_asked_for(api: Api, tmp_path: Path) -> None:
    async with running_receiver() as receiver:
        only_failed = await create_webhook(api, receiver.url, ["content_job.failed"])
        default = await create_webhook(api, receiver.url)
        everything = await create_webhook(
            api, receiver.url, ["content_job.queued", "content_job.running", "content_job.done"]
        )
        assert default["events"] == [
            "content_job.done",
            "content_job.failed",
            "content_job.canceled",
        ]
        async with worker_process(api, tmp_path):
            await api.submit("noop")
            await api.submit("doomed")
            # failed: 1; default: done + failed; everything: 2 queued + 2 running + 1 done.
            await await_for(lambda: len(receiver.requests) >= 8, 30)
            delivered = (
                "SELECT count(*) FROM skiplock.webhook_deliveries WHERE status = 'delivered'"
            )
            await await_for(lambda: api.sql(delivered) == [(8,)], 10)
        ids = {r.headers["webhook-id"] for r in receiver.requests}

    async def types(hook: dict[str, Any]) -> list[str]:
        items = await deliveries(api, hook["id"])
        assert {i["id"] for i in items} <= ids and all(i["status"] == "delivered" for i in items)
        return sorted(i["type"] for i in items)

    assert await types(only_failed) == ["content_job.failed"]
    assert await types(default) == ["content_job.done", "content_job.failed"]
    assert await types(everything) == [
        "content_job.done",
        "content_job.queued",
        "content_job.queued",
        "content_job.running",
        "content_job.running",
    ]
    assert len(receiver.requests) == 8


async def test_a_change_made_in_psql_is_delivered(api: Api, tmp_path: Path) -> None:
    async with running_receiver() as receiver:
        hook = await create_webhook(api, receiver.url)
        job_id = await api.submit("noop", runAt=FAR_FUTURE)
        async with worker_process(api, tmp_path):
            api.sql(
                "UPDATE skiplock.content_jobs SET status = 'failed', error_message = 'by hand' "
                "WHERE id = %s",
                (uuid.UUID(job_id),),
            )
            await await_for(lambda: receiver.requests, 30)
        payload = verified(hook["secret"], receiver.requests[0])
    assert (payload["jobId"], payload["type"]) == (job_id, "content_job.failed")
    assert payload["errorMessage"] == "by hand"


# ------------------------------------------------------------------------------------------
# Retries, with the same webhook-id
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_500_is_retried_about_5_s_later_with_the_same_webhook_id(
    api: Api, tmp_path: Path
) -> None:
    async with running_receiver(lambda n: 500 if n == 0 else 200) as receiver:
        hook = await create_webhook(api, receiver.url)
        async with worker_process(api, tmp_path):
            await api.submit("noop")
            await await_for(lambda: receiver.requests, 30)
            failed_once = await _await_delivery(api, hook["id"], attempts=1, status="pending")
            assert failed_once["lastStatusCode"] == 500
            assert failed_once["lastError"] == "HTTP 500: receiver says no"
            retry_at = datetime.fromisoformat(failed_once["nextAttemptAt"])
            ended = datetime.now(UTC)
            assert ended + timedelta(seconds=2) < retry_at < ended + timedelta(seconds=6.5)
            assert failed_once["deliveredAt"] is None
            await await_for(lambda: len(receiver.requests) >= 2, 30)
            delivered = await _await_delivery(api, hook["id"], attempts=2, status="delivered")
    one, two = receiver.requests
    assert one.headers["webhook-id"] == two.headers["webhook-id"] == delivered["id"]
    assert verified(hook["secret"], one) == verified(hook["secret"], two)
    assert two.at - one.at >= 4.0  # 5 s less the 20 % jitter
    assert delivered["lastStatusCode"] == 200 and delivered["lastError"] is None


@pytest.mark.slow
async def test_an_attempt_that_hangs_ends_after_10_s_and_is_retried_with_the_same_webhook_id(
    api: Api, tmp_path: Path
) -> None:
    async with running_receiver(lambda n: HANG if n == 0 else 200) as receiver:
        hook = await create_webhook(api, receiver.url)
        async with worker_process(api, tmp_path):
            await api.submit("noop")
            await await_for(lambda: receiver.requests, 30)
            timed_out = await _await_delivery(
                api, hook["id"], attempts=1, status="pending", wait=40
            )
            assert timed_out["lastError"] == "no answer within 10 s"
            assert timed_out["lastStatusCode"] is None
            await await_for(lambda: len(receiver.requests) >= 2, 40)
            await _await_delivery(api, hook["id"], attempts=2, status="delivered")
    one, two = receiver.requests
    assert one.headers["webhook-id"] == two.headers["webhook-id"]
    assert one.body == two.body
    assert two.at - one.at >= 10 + 4.0  # the attempt's 10 s, then about 5 s


async def _await_delivery(
    api: Api, webhook_id: str, *, attempts: int, status: str, wait: float = 30
) -> dict[str, Any]:
    """The webhook's one delivery once it has made `attempts` attempts and ended in
    `status` (its attempt written, not in flight)."""
    found: dict[str, Any] = {}
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        items = await deliveries(api, webhook_id)
        ended = bool(items) and (
            status != "pending" or items[0]["lastError"] or items[0]["lastStatusCode"]
        )
        if ended and items[0]["attempts"] == attempts and items[0]["status"] == status:
            return items[0]
        found = items[0] if items else {}
        await asyncio.sleep(0.05)
    raise AssertionError(f"the delivery never reached {attempts} attempts, {status}: {found}")


# ------------------------------------------------------------------------------------------
# Nothing lost: events committed while no worker ran, a worker killed mid-attempt
# ------------------------------------------------------------------------------------------


async def test_events_committed_while_no_worker_ran_are_delivered_once_one_starts(
    api: Api, tmp_path: Path
) -> None:
    async with running_receiver() as receiver:
        hook = await create_webhook(api, receiver.url)
        jobs = [await api.submit("noop", runAt=FAR_FUTURE) for _ in range(3)]
        for job_id in jobs:
            await cancel(api, job_id)
        pending = api.sql(
            "SELECT count(*) FROM skiplock.webhook_deliveries WHERE status = 'pending'"
        )
        assert pending == [(3,)]
        assert receiver.requests == []
        async with worker_process(api, tmp_path):
            await await_for(lambda: len(receiver.requests) >= 3, 30)
        delivered = {verified(hook["secret"], r)["jobId"] for r in receiver.requests}
    assert delivered == set(jobs)


@pytest.mark.slow
async def test_a_delivery_whose_worker_was_killed_mid_attempt_is_sent_again(
    api: Api, tmp_path: Path
) -> None:
    async with running_receiver(lambda n: HANG if n == 0 else 200) as receiver:
        hook = await create_webhook(api, receiver.url)
        job_id = await api.submit("noop", runAt=FAR_FUTURE)
        await cancel(api, job_id)
        async with worker_process(api, tmp_path) as doomed:
            await await_for(lambda: receiver.requests, 30)  # the attempt is in flight
            doomed.process.kill()
            await asyncio.to_thread(doomed.process.wait)
        in_flight = await deliveries(api, hook["id"])
        assert in_flight[0]["status"] == "pending" and in_flight[0]["attempts"] == 1
        async with worker_process(api, tmp_path):
            # Its lease (LEASE_SECONDS, 30) passes, then any worker sends it again.
            await await_for(lambda: len(receiver.requests) >= 2, 60)
            delivered = await _await_delivery(api, hook["id"], attempts=2, status="delivered")
    one, two = receiver.requests
    assert one.headers["webhook-id"] == two.headers["webhook-id"] == delivered["id"]
    assert verified(hook["secret"], two)["jobId"] == job_id


async def test_a_worker_stopping_hands_its_attempts_back_due_at_once(
    api: Api, database_url: str
) -> None:
    from skiplock import db
    from skiplock.worker.webhooks import DeliverySender

    async with running_receiver(lambda n: HANG) as receiver:
        hook = await create_webhook(api, receiver.url)
        await cancel(api, await api.submit("noop", runAt=FAR_FUTURE))
        pool = await db.open_pool(database_url)
        try:
            sender = DeliverySender(pool, "test-worker", allow_private=True)
            assert await sender.run_once() == 1
            await await_for(lambda: receiver.requests, 10)
            await sender.close()
        finally:
            await pool.close()
    rows = api.sql(
        "SELECT attempts, locked_by, next_attempt_at <= now() AND lease_expires_at IS NULL, status "
        "FROM skiplock.webhook_deliveries WHERE webhook_id = %s",
        (uuid.UUID(hook["id"]),),
    )
    assert rows == [(0, None, True, "pending")]


# ------------------------------------------------------------------------------------------
# A receiver that hangs slows neither claiming nor completion, nor other webhooks
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_1000_jobs_drain_while_the_receiver_hangs_then_every_delivery_arrives(
    api: Api, tmp_path: Path
) -> None:
    async with running_receiver(lambda n: HANG) as receiver:
        hook = await create_webhook(api, receiver.url)
        # 20 canceled jobs: their deliveries are the first attempts, and they hang.
        api.sql(
            "INSERT INTO skiplock.content_jobs (company_id, job_type, status) "
            "SELECT %s, 'noop', 'canceled' FROM generate_series(1, 20)",
            (api.acme.company_id,),
        )
        async with worker_process(api, tmp_path, "--concurrency", "8"):
            await await_for(lambda: receiver.open_now == PER_WEBHOOK, 30)
            api.sql(
                "INSERT INTO skiplock.content_jobs (company_id, job_type) "
                "SELECT %s, 'noop' FROM generate_series(1, 1000)",
                (api.acme.company_id,),
            )
            undone = (
                "SELECT count(*) FROM skiplock.content_jobs WHERE status IN ('queued', 'running')"
            )
            await await_for(lambda: api.sql(undone) == [(0,)], 120)
            # Every job is done while the receiver has answered nothing: the 8 handler slots
            # were never taken by deliveries, nor did claims or completions wait for them.
            assert api.sql(
                "SELECT count(*) FROM skiplock.webhook_deliveries WHERE status = 'delivered'"
            ) == [(0,)]
            assert receiver.most_open == PER_WEBHOOK  # attempts at once, never more
            receiver.answer = lambda n: 200
            receiver.release()
            delivered = (
                "SELECT count(*) FROM skiplock.webhook_deliveries WHERE status = 'delivered'"
            )
            await await_for(lambda: api.sql(delivered) == [(1020,)], 120)
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert len(ids) == 1020
    assert {i["status"] for i in await deliveries(api, hook["id"], limit=200)} == {"delivered"}


async def test_a_hanging_receiver_holds_a_few_slots_and_other_webhooks_flow(
    api: Api, database_url: str
) -> None:
    from skiplock import db
    from skiplock.worker.webhooks import DeliverySender

    async with running_receiver(lambda n: HANG) as slow, running_receiver() as quick:
        await create_webhook(api, slow.url)
        await create_webhook(api, quick.url, tenant=api.other)
        for tenant, count in ((api.acme, 20), (api.other, 5)):
            api.sql(
                "SELECT skiplock.enqueue_content_jobs(%s, 'noop',"
                " array_fill('{}'::jsonb, ARRAY[%s]), NULL, 0, %s)",
                (tenant.company_id, count, datetime(2999, 1, 1, tzinfo=UTC)),
            )
            api.sql(
                "UPDATE skiplock.content_jobs SET status = 'canceled' WHERE company_id = %s",
                (tenant.company_id,),
            )
        pool = await db.open_pool(database_url)
        sender = DeliverySender(pool, "test-worker", allow_private=True)
        try:
            assert await sender.run_once() == PER_WEBHOOK + 5
            await await_for(
                lambda: len(quick.requests) == 5 and len(slow.requests) == PER_WEBHOOK, 10
            )
            assert await sender.run_once() == 0  # the slow webhook is at its limit
        finally:
            await sender.close()
            await pool.close()


# ------------------------------------------------------------------------------------------
# SSRF
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:8000/hook", "127.0.0.1 is a loopback address"),
        ("http://[::1]/hook", "::1 is a loopback address"),
        ("https://10.1.2.3/hook", "10.1.2.3 is a private address"),
        ("http://192.168.0.10/", "192.168.0.10 is a private address"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a link-local address"),
        ("http://224.0.0.251/", "224.0.0.251 is a multicast address"),
        ("http://0.0.0.0:9000/", "0.0.0.0 is an unspecified address"),
        ("http://[::ffff:127.0.0.1]/", "stands for 127.0.0.1, a loopback address"),
    ],
)
async def test_a_literal_private_address_is_refused_at_creation(
    database_url: str, tmp_path: Path, url: str, why: str
) -> None:
    async with running_api(database_url, tmp_path / "storage") as strict:
        response = await strict.client.post(
            f"{strict.acme.prefix}/webhooks", json={"url": url}, headers=strict.acme.headers
        )
    assert response.status_code == 422, response.text
    assert why in response.json()["error"]["message"]
    assert "SKIPLOCK_WEBHOOK_ALLOW_PRIVATE" in response.json()["error"]["message"]


async def test_a_host_name_that_resolves_to_loopback_is_refused_at_delivery(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        running_api(database_url, tmp_path / "storage") as strict,
        running_receiver() as receiver,
    ):
        hook = await create_webhook(strict, f"http://localhost:{receiver.port}/hook")
        await cancel(strict, await strict.submit("noop", runAt=FAR_FUTURE))
        async with worker_process(strict, tmp_path, env={}):  # no SKIPLOCK_WEBHOOK_ALLOW_PRIVATE
            item = await _await_delivery(strict, hook["id"], attempts=1, status="pending")
        assert item["lastStatusCode"] is None
        assert item["lastError"].startswith("refused: localhost resolves to ")
        assert "a loopback address" in item["lastError"]
        assert "SKIPLOCK_WEBHOOK_ALLOW_PRIVATE=true" in item["lastError"]
        assert receiver.requests == []


# ------------------------------------------------------------------------------------------
# The routes: checks in SPEC §4's order, bounds, tenants
# ------------------------------------------------------------------------------------------


async def test_the_secret_is_shown_once_and_is_standard(api: Api) -> None:
    hook = await create_webhook(api, "https://example.com/hooks/skiplock?x=1")
    assert set(hook) == {"id", "url", "events", "secret", "createdAt"}
    assert hook["url"] == "https://example.com/hooks/skiplock?x=1"
    assert hook["secret"].startswith("whsec_")
    assert 24 <= len(base64.b64decode(hook["secret"].removeprefix("whsec_"), validate=True)) <= 64
    listed = await api.client.get(f"{api.acme.prefix}/webhooks", headers=api.acme.headers)
    assert listed.json() == {"items": [{k: v for k, v in hook.items() if k != "secret"}]}
    assert "whsec_" not in listed.text
    other = await api.client.get(f"{api.other.prefix}/webhooks", headers=api.other.headers)
    assert other.json() == {"items": []}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"url": None},
        {"url": 42},
        {"url": ""},
        {"url": "ftp://example.com/"},
        {"url": "example.com/hook"},
        {"url": "https://user:secret@example.com/"},
        {"url": "https://example.com/a b"},
        {"url": "https://exämple.com/"},
        {"url": "https://example.com/#frag"},
        {"url": "https://example.com:99999/"},
        {"url": "https://" + "a" * 2040 + ".com/"},
        {"url": "https://example.com/", "events": []},
        {"url": "https://example.com/", "events": "content_job.done"},
        {"url": "https://example.com/", "events": ["content_job.finished"]},
        {"url": "https://example.com/", "events": [1]},
        {"url": "https://example.com/", "events": ["content_job.done"] * 13},
        {"url": "https://example.com/", "secret": "mine"},
        [],
    ],
)
async def test_an_invalid_webhook_body_is_422(api: Api, body: Any) -> None:
    response = await api.client.post(
        f"{api.acme.prefix}/webhooks", json=body, headers=api.acme.headers
    )
    assert response.status_code == 422, response.text
    assert api.sql("SELECT count(*) FROM skiplock.webhooks") == [(0,)]


async def test_webhook_routes_check_in_spec_order(api: Api) -> None:
    hook = await create_webhook(api, "https://example.com/hook")
    post, own = f"{api.acme.prefix}/webhooks", f"{api.acme.prefix}/webhooks/{hook['id']}"
    checks = [
        ("POST", post, {}, None, 401),
        ("POST", "/companies/nope/webhooks", api.acme.headers, None, 404),
        ("POST", post, api.other.headers, None, 403),
        ("POST", post, {**api.acme.headers, "Content-Type": "text/plain"}, b"{}", 415),
        ("POST", post, {**api.acme.headers, "Content-Type": "application/json"}, b"{", 400),
        ("DELETE", f"{api.acme.prefix}/webhooks/nope", api.acme.headers, None, 404),
        ("DELETE", own, api.other.headers, None, 403),
        ("DELETE", f"{api.other.prefix}/webhooks/{hook['id']}", api.other.headers, None, 404),
        ("GET", f"{own}/deliveries", api.other.headers, None, 403),
        (
            "GET",
            f"{api.other.prefix}/webhooks/{hook['id']}/deliveries",
            api.other.headers,
            None,
            404,
        ),
        ("GET", f"{own}/deliveries?limit=0", api.acme.headers, None, 422),
        ("GET", f"{own}/deliveries?limit=201", api.acme.headers, None, 422),
        ("GET", f"{own}/deliveries?status=lost", api.acme.headers, None, 422),
        (
            "GET",
            f"{api.acme.prefix}/webhooks/{uuid.uuid4()}/deliveries",
            api.acme.headers,
            None,
            404,
        ),
    ]
    for method, path, headers, content, status in checks:
        response = await api.client.request(method, path, headers=headers, content=content)
        assert response.status_code == status, (method, path, response.text)
        assert "error" in response.json()
    big = b'{"url": "' + b"a" * (1 << 20) + b'"}'
    too_big = await api.client.post(
        post, content=big, headers={**api.acme.headers, "Content-Type": "application/json"}
    )
    assert too_big.status_code == 413
    assert (await deliveries(api, hook["id"], limit=200, status="pending")) == []


async def test_a_company_has_at_most_20_webhooks(api: Api) -> None:
    from skiplock.api.webhooks import MAX_WEBHOOKS_PER_COMPANY

    made = await asyncio.gather(
        *(
            api.client.post(
                f"{api.acme.prefix}/webhooks",
                json={"url": f"https://example.com/{n}"},
                headers=api.acme.headers,
            )
            for n in range(MAX_WEBHOOKS_PER_COMPANY + 5)
        )
    )
    statuses = sorted(r.status_code for r in made)
    assert statuses == [201] * MAX_WEBHOOKS_PER_COMPANY + [409] * 5
    assert "delete one first" in next(r for r in made if r.status_code == 409).text
    assert api.sql("SELECT count(*) FROM skiplock.webhooks") == [(MAX_WEBHOOKS_PER_COMPANY,)]


async def test_deleting_a_webhook_drops_its_pending_deliveries(api: Api) -> None:
    hook = await create_webhook(api, "https://example.com/hook")
    await cancel(api, await api.submit("noop", runAt=FAR_FUTURE))
    assert [i["status"] for i in await deliveries(api, hook["id"])] == ["pending"]
    path = f"{api.acme.prefix}/webhooks/{hook['id']}"
    response = await api.client.delete(path, headers=api.acme.headers)
    assert response.status_code == 204 and response.content == b""
    assert api.sql("SELECT count(*) FROM skiplock.webhook_deliveries") == [(0,)]
    gone = await api.client.get(f"{path}/deliveries", headers=api.acme.headers)
    assert gone.status_code == 404
    assert (await api.client.delete(path, headers=api.acme.headers)).status_code == 404


# ------------------------------------------------------------------------------------------
# The outbox, in SQL
# ------------------------------------------------------------------------------------------


def _webhook_row(conn: psycopg.Connection[Any], company_id: uuid.UUID, events: list[str]) -> Any:
    from skiplock.webhooks import new_secret

    row = conn.execute(
        "INSERT INTO webhooks (company_id, url, events, secret) VALUES (%s, %s, %s, %s) "
        "RETURNING id",
        (company_id, "https://example.com/hook", events, new_secret()),
    ).fetchone()
    assert row is not None
    return row[0]


def test_a_delivery_row_commits_with_its_event_and_a_rollback_leaves_neither(
    conn: psycopg.Connection[Any], company_id: uuid.UUID
) -> None:
    _webhook_row(conn, company_id, ["content_job.queued", "content_job.canceled"])
    _webhook_row(conn, company_id, ["content_job.canceled"])
    with pytest.raises(psycopg.errors.RaiseException), conn.transaction():
        conn.execute("SELECT enqueue_content_job(%s, 'noop')", (company_id,))
        conn.execute("DO $$ BEGIN RAISE 'rolled back'; END $$")
    assert conn.execute("SELECT count(*) FROM webhook_deliveries").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM content_job_events").fetchone() == (0,)

    conn.execute(
        "SELECT enqueue_content_jobs(%s, 'noop', array_fill('{}'::jsonb, ARRAY[3]))",
        (company_id,),
    )
    conn.execute("UPDATE content_jobs SET status = 'canceled'")
    pairs = conn.execute(
        "SELECT e.type, count(d.id) FROM content_job_events AS e "
        "LEFT JOIN webhook_deliveries AS d ON d.event_id = e.id GROUP BY e.type ORDER BY 1"
    ).fetchall()
    # 3 queued events to the first webhook; 3 canceled events to both.
    assert pairs == [("content_job.canceled", 6), ("content_job.queued", 3)]
    same = conn.execute(
        "SELECT bool_and(d.payload = e.payload AND d.type = e.type AND d.job_id = e.job_id "
        "AND d.event_created_at = e.created_at AND d.company_id = e.company_id) "
        "FROM webhook_deliveries AS d JOIN content_job_events AS e ON e.id = d.event_id"
    ).fetchone()
    assert same == (True,)


def test_a_job_deleted_by_hand_keeps_its_deliveries_as_it_keeps_its_events(
    conn: psycopg.Connection[Any], company_id: uuid.UUID
) -> None:
    # No foreign key (sql/0009): the change happened, so it is still reported; job
    # retention deletes both with the job (tests/test_retention.py).
    _webhook_row(conn, company_id, ["content_job.queued"])
    job = conn.execute("SELECT enqueue_content_job(%s, 'noop')", (company_id,)).fetchone()
    assert job is not None
    conn.execute("DELETE FROM content_jobs WHERE id = %s", (job[0],))
    assert conn.execute(
        "SELECT (SELECT count(*) FROM webhook_deliveries WHERE job_id = %(id)s), "
        "(SELECT count(*) FROM content_job_events WHERE job_id = %(id)s)",
        {"id": job[0]},
    ).fetchone() == (1, 1)


async def test_old_finished_deliveries_are_pruned_and_pending_ones_kept(
    conn: psycopg.Connection[Any], company_id: uuid.UUID, database_url: str
) -> None:
    from skiplock import db
    from skiplock.worker.maintenance import prune_once

    _webhook_row(conn, company_id, ["content_job.queued"])
    conn.execute(
        "SELECT enqueue_content_jobs(%s, 'noop', array_fill('{}'::jsonb, ARRAY[4]))",
        (company_id,),
    )
    ids = [row[0] for row in conn.execute("SELECT id FROM webhook_deliveries ORDER BY id")]
    old = "created_at = now() - interval '8 days'"
    conn.execute(
        f"UPDATE webhook_deliveries SET {old}, status = 'delivered', next_attempt_at = NULL, "
        "delivered_at = now() WHERE id = %s",
        (ids[0],),
    )
    conn.execute(
        f"UPDATE webhook_deliveries SET {old}, status = 'failed', next_attempt_at = NULL "
        "WHERE id = %s",
        (ids[1],),
    )
    conn.execute(f"UPDATE webhook_deliveries SET {old} WHERE id = %s", (ids[2],))  # pending
    # A webhook deleted by hand in psql leaves its deliveries: they go too.
    other = _webhook_row(conn, company_id, ["content_job.queued"])
    conn.execute("SELECT enqueue_content_job(%s, 'noop')", (company_id,))
    conn.execute("DELETE FROM webhooks WHERE id = %s", (other,))
    pool = await db.open_pool(database_url)
    try:
        assert await prune_once(pool, retention_days=7) == 2 + 1
    finally:
        await pool.close()
    left = conn.execute("SELECT status, count(*) FROM webhook_deliveries GROUP BY 1").fetchall()
    assert left == [("pending", 3)]


# ------------------------------------------------------------------------------------------
# The decisions, pure
# ------------------------------------------------------------------------------------------


def test_the_retry_schedule_is_spec_7s_with_20_percent_jitter_then_failed() -> None:
    import random

    from skiplock.worker.webhooks import MAX_ATTEMPTS, next_attempt_at

    now = datetime(2026, 1, 1, tzinfo=UTC)
    expected = [5, 300, 1800, 7200, 18000, 36000, 36000]
    for low, high in ((0.0, 0.8), (0.9999999, 1.2)):
        rng = random.Random()
        rng.random = lambda low=low: low  # type: ignore[method-assign]
        got = [next_attempt_at(now, n, rng) for n in range(1, 8)]
        assert [(g - now).total_seconds() for g in got if g] == pytest.approx(
            [s * high for s in expected]
        )
    assert MAX_ATTEMPTS == 8
    assert next_attempt_at(now, 8) is None  # the eighth attempt was the last


def test_signatures_are_what_the_reference_library_computes() -> None:
    from skiplock.webhooks import new_secret, secret_key, sign

    secret = new_secret()
    body = '{"eventId":1,"type":"content_job.done","note":"ünïcode"}'.encode()
    stamp = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
    theirs = Webhook(secret).sign("msg-1", stamp, body)
    assert sign(secret_key(secret), "msg-1", int(stamp.timestamp()), body) == theirs


async def test_a_worker_with_a_backlog_of_jobs_sends_only_deliveries_due_a_second_ago(
    api: Api, database_url: str
) -> None:
    from skiplock import db
    from skiplock.worker.webhooks import DEFER_SECONDS, DeliverySender

    async with running_receiver() as receiver:
        await create_webhook(api, receiver.url)
        await cancel(api, await api.submit("noop", runAt=FAR_FUTURE))
        pool = await db.open_pool(database_url)
        sender = DeliverySender(pool, "test-worker", allow_private=True, busy=lambda: True)
        try:
            assert await sender.run_once() == 0  # due just now: the jobs go first
            api.sql(
                "UPDATE skiplock.webhook_deliveries SET next_attempt_at = now() - %s",
                (timedelta(seconds=DEFER_SECONDS + 0.5),),
            )
            assert await sender.run_once() == 1  # due long enough: sent all the same
            await await_for(lambda: receiver.requests, 10)
        finally:
            await sender.close()
            await pool.close()


# ------------------------------------------------------------------------------------------
# Regressions found while measuring (bench/RESULTS.md, issue 16)
# ------------------------------------------------------------------------------------------


async def test_one_connection_is_kept_alive_for_a_receivers_deliveries() -> None:
    """llhttp forgets keep-alive once an answer is complete: asked then, every delivery
    opened (and closed) a connection of its own."""
    from skiplock.webhooks import parse_url
    from skiplock.worker.webhook_http import HttpSender

    writers: list[asyncio.StreamWriter] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sender = HttpSender(allow_private=True)
    try:
        target = parse_url(f"http://127.0.0.1:{port}/hook")
        for n in range(5):
            assert (await sender.post(target, {"webhook-id": str(n)}, b"{}")).status == 200
    finally:
        await sender.close()
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()
    assert len(writers) == 1  # connections accepted


async def test_the_sender_stops_when_cancelled_as_a_doorbell_rings(database_url: str) -> None:
    """A cancellation that lands as the wait for a doorbell ends must stop the sender: with
    asyncio.wait_for (3.11) it was swallowed, and the worker never exited on SIGTERM."""
    from skiplock import db
    from skiplock.worker.webhooks import DeliverySender

    pool = await db.open_pool(database_url)
    try:
        for _ in range(20):
            sender = DeliverySender(pool, "test-worker", allow_private=True)
            task = asyncio.create_task(sender.run_forever())
            await asyncio.sleep(0.05)  # claimed nothing; waiting for a doorbell
            sender.wake()
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=3)
            assert done == {task}, "the sender went on after it was cancelled"
    finally:
        await pool.close()
