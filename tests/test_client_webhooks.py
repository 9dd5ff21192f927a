"""client.webhooks, client.schedules (Client and AsyncClient) against the real API, and
verify_webhook() checked against the `standardwebhooks` reference library both ways."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from api_harness import Api, running_api
from skiplock.client import (
    AsyncClient,
    Client,
    Conflict,
    InvalidRequest,
    NotFound,
    WebhookVerificationFailed,
    verify_webhook,
)
from skiplock.webhooks import new_secret
from webhook_receiver import running_receiver
from worker_harness import await_for, running_worker


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(database_url, tmp_path / "storage", webhook_allow_private=True) as a:
        yield a


async def test_async_client_webhooks_and_their_deliveries(api: Api, tmp_path: Path) -> None:
    async with (
        running_receiver() as receiver,
        AsyncClient(api.base_url, api.acme.api_key) as client,
    ):
        hook = await client.webhooks.create(receiver.url, events=["content_job.done"])
        assert hook["secret"].startswith("whsec_")
        assert [h["id"] for h in await client.webhooks.list()] == [hook["id"]]
        job = await client.submit("noop")
        async with running_worker(api.database_url, tmp_path / "storage"):
            await await_for(lambda: receiver.requests, 30)
        event = verify_webhook(
            hook["secret"], receiver.requests[0].body, receiver.requests[0].headers
        )
        assert (event["jobId"], event["type"]) == (job["jobId"], "content_job.done")
        [delivery] = await client.webhooks.deliveries(hook["id"], limit=10)
        assert (delivery["jobId"], delivery["status"]) in {
            (job["jobId"], "delivered"),
            (job["jobId"], "pending"),  # the 200 may not be written yet
        }
        assert await client.webhooks.deliveries(hook["id"], status="failed") == []
        await client.webhooks.delete(hook["id"])
        assert await client.webhooks.list() == []
        with pytest.raises(NotFound):
            await client.webhooks.deliveries(hook["id"])
        with pytest.raises(InvalidRequest) as refused:
            await client.webhooks.create("ftp://example.com/")
        assert "http:// or https://" in refused.value.message


async def test_sync_client_schedules_and_webhooks(api: Api) -> None:
    def use() -> None:
        with Client(api.base_url, api.acme.api_key) as client:
            made = client.schedules.create(
                "echo", {"text": "hi"}, cron="0 9 * * 1-5", timezone="Europe/Berlin", priority=2
            )
            assert (made["cron"], made["timezone"], made["priority"]) == (
                "0 9 * * 1-5",
                "Europe/Berlin",
                2,
            )
            every = client.schedules.create("noop", interval_seconds=60, source_task_id="t")
            assert every["intervalSeconds"] == 60 and every["sourceTaskId"] == "t"
            assert [s["id"] for s in client.schedules.list()] == [made["id"], every["id"]]
            client.schedules.delete(made["id"])
            assert [s["id"] for s in client.schedules.list()] == [every["id"]]
            with pytest.raises(NotFound):
                client.schedules.delete(made["id"])
            with pytest.raises(InvalidRequest):
                client.schedules.create("noop", cron="0 9 * * *", interval_seconds=60)
            hook = client.webhooks.create("https://example.com/hook")
            assert client.webhooks.deliveries(hook["id"]) == []
            client.webhooks.delete(hook["id"])
            for n in range(20):
                client.webhooks.create(f"https://example.com/{n}")
            with pytest.raises(Conflict):
                client.webhooks.create("https://example.com/21")

    await asyncio.to_thread(use)


# ------------------------------------------------------------------------------------------
# verify_webhook, against the reference library
# ------------------------------------------------------------------------------------------


def signed_by_reference(secret: str, body: bytes, at: float | None = None) -> dict[str, str]:
    """Headers as the `standardwebhooks` library signs them."""
    when = datetime.fromtimestamp(at if at is not None else time.time(), UTC)
    return {
        "webhook-id": "msg_2b6a",
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign("msg_2b6a", when, body),
    }


def test_verify_webhook_accepts_what_the_reference_library_signs() -> None:
    secret = new_secret()
    body = b'{"eventId":7,"type":"content_job.done","status":"done","note":"\\u00e9"}'
    headers = signed_by_reference(secret, body)
    assert verify_webhook(secret, body, headers)["eventId"] == 7
    assert verify_webhook(secret, body.decode(), {k.upper(): v for k, v in headers.items()})
    # Several signatures (a secret being rotated): one match is enough.
    rotated = {**headers, "webhook-signature": "v1,bm9wZQ== " + headers["webhook-signature"]}
    assert verify_webhook(secret, body, rotated)["status"] == "done"


@pytest.mark.parametrize(
    "change",
    ["body", "id", "timestamp", "secret", "missing", "old", "future", "not a number"],
)
def test_verify_webhook_refuses_a_forged_or_stale_delivery(change: str) -> None:
    secret = new_secret()
    body = b'{"eventId":7,"type":"content_job.done"}'
    headers = signed_by_reference(secret, body)
    if change == "body":
        body = body.replace(b"7", b"8")
    elif change == "id":
        headers["webhook-id"] = "msg_other"
    elif change == "timestamp":
        headers["webhook-timestamp"] = str(int(headers["webhook-timestamp"]) + 1)
    elif change == "secret":
        secret = new_secret()
    elif change == "missing":
        del headers["webhook-signature"]
    elif change == "old":
        headers = signed_by_reference(secret, body, at=time.time() - 600)
    elif change == "future":
        headers = signed_by_reference(secret, body, at=time.time() + 600)
    else:
        headers["webhook-timestamp"] = "soon"
    with pytest.raises(WebhookVerificationFailed):
        verify_webhook(secret, body, headers)


def test_the_reference_library_accepts_what_skiplock_signs() -> None:
    from skiplock.webhooks import secret_key, signed_headers

    secret = new_secret()
    body = b'{"eventId":1,"type":"content_job.failed","errorMessage":"\\u2603"}'
    headers = signed_headers(secret_key(secret), "0d9f-delivery", int(time.time()), body)
    assert Webhook(secret).verify(body, headers)["errorMessage"] == "\u2603"
    assert verify_webhook(secret, body, headers)["type"] == "content_job.failed"
