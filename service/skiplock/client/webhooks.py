"""Webhooks and schedules through the client (`client.webhooks`, `client.schedules`), and
`verify_webhook()` for receivers written in Python.

    from skiplock.client import Client, verify_webhook

    with Client(url, key) as client:
        hook = client.webhooks.create("https://example.com/skiplock")  # hook["secret"]: once
        client.schedules.create("diagram", {"source": "digraph { a }"}, cron="0 9 * * 1-5",
                                timezone="Europe/Berlin")

    # in the receiver, with the raw body and the request's headers:
    event = verify_webhook(secret, body, headers)  # WebhookVerificationFailed if forged

The requests are built here once (WebhookCalls, ScheduleCalls); Client and AsyncClient only
send them, through the same `_call` as everything else.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from skiplock.client.errors import SkiplockError
from skiplock.client.protocol import Call, JobDict, Routes
from skiplock.webhooks import secret_key, sign

Items = list[JobDict]  # (a method named `list` shadows the builtin in class bodies)
DEFAULT_TOLERANCE_SECONDS = 300  # Standard Webhooks' reference libraries use 5 minutes


class WebhookVerificationFailed(SkiplockError):
    """A delivery whose signature, headers or timestamp do not hold: do not trust it."""


def verify_webhook(
    secret: str,
    body: bytes | str,
    headers: Mapping[str, str],
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
) -> Any:
    """The delivery's JSON once its Standard Webhooks signature checks out.

    `body` is the raw request body exactly as received (not re-encoded JSON), `headers` the
    request's headers (any mapping; names are matched without regard to case). Raises
    WebhookVerificationFailed when a header is missing, the timestamp is more than
    `tolerance` seconds from now (a replay), or no signature in `webhook-signature` matches.
    Receivers should also de-duplicate by `webhook-id`: a delivery can come more than once.
    """
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    found = {name.lower(): value for name, value in headers.items()}
    message_id = found.get("webhook-id")
    stamp = found.get("webhook-timestamp")
    signatures = found.get("webhook-signature")
    if not (message_id and stamp and signatures):
        raise WebhookVerificationFailed(
            "missing webhook-id, webhook-timestamp or webhook-signature header"
        )
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationFailed(f"webhook-timestamp {stamp!r} is not a number") from None
    if abs(time.time() - timestamp) > tolerance:
        raise WebhookVerificationFailed(
            f"webhook-timestamp is more than {tolerance:g} s from now (a replay, or a clock off)"
        )
    expected = sign(secret_key(secret), message_id, timestamp, raw).encode()
    if not any(hmac.compare_digest(expected, given.encode()) for given in signatures.split()):
        raise WebhookVerificationFailed("no signature in webhook-signature matches this body")
    return json.loads(raw)


# ------------------------------------------------------------------------------------------
# The requests
# ------------------------------------------------------------------------------------------


class WebhookCalls:
    def __init__(self, routes: Routes) -> None:
        self.path = f"{routes.prefix}/webhooks"

    def create(self, url: str, events: list[str] | None) -> Call:
        body: dict[str, Any] = {"url": url}
        if events is not None:
            body["events"] = list(events)
        return Call("POST", self.path, body=body)

    def list(self) -> Call:
        return Call("GET", self.path)

    def delete(self, webhook_id: str) -> Call:
        return Call("DELETE", f"{self.path}/{webhook_id}")

    def deliveries(self, webhook_id: str, limit: int | None, status: str | None) -> Call:
        params = {"limit": str(limit)} if limit is not None else {}
        if status is not None:
            params["status"] = status
        return Call("GET", f"{self.path}/{webhook_id}/deliveries", params=params)


class ScheduleCalls:
    def __init__(self, routes: Routes) -> None:
        self.path = f"{routes.prefix}/schedules"

    def create(self, job_type: str, input: Mapping[str, Any] | None, **fields: Any) -> Call:
        body: dict[str, Any] = {"jobType": job_type, "input": dict(input or {})}
        names = {
            "cron": "cron",
            "interval_seconds": "intervalSeconds",
            "timezone": "timezone",
            "source_task_id": "sourceTaskId",
            "priority": "priority",
        }
        body.update({names[k]: v for k, v in fields.items() if v is not None})
        return Call("POST", self.path, body=body)

    def list(self) -> Call:
        return Call("GET", self.path)

    def delete(self, schedule_id: str) -> Call:
        return Call("DELETE", f"{self.path}/{schedule_id}")


# ------------------------------------------------------------------------------------------
# client.webhooks and client.schedules
# ------------------------------------------------------------------------------------------

Send = Callable[[Call], Any]
SendAsync = Callable[[Call], Awaitable[Any]]


class Webhooks:
    """`client.webhooks`: the company's completion webhooks (SPEC §7)."""

    def __init__(self, send: Send, routes: Callable[[], Routes]) -> None:
        self._send = send
        self._routes = routes

    def create(self, url: str, events: list[str] | None = None) -> JobDict:
        """A new webhook: `{"id", "url", "events", "secret", "createdAt"}`. Keep `secret`:
        it is shown only now. `events` defaults to done, failed and canceled."""
        result: JobDict = self._send(WebhookCalls(self._routes()).create(url, events))
        return result

    def list(self) -> Items:
        """The company's webhooks (without their secrets)."""
        return list(self._send(WebhookCalls(self._routes()).list())["items"])

    def delete(self, webhook_id: str) -> None:
        """Delete the webhook; its pending deliveries are dropped."""
        self._send(WebhookCalls(self._routes()).delete(webhook_id))

    def deliveries(
        self, webhook_id: str, *, limit: int | None = None, status: str | None = None
    ) -> Items:
        """Its newest deliveries (default 50, at most 200), optionally of one status."""
        call = WebhookCalls(self._routes()).deliveries(webhook_id, limit, status)
        return list(self._send(call)["items"])


class Schedules:
    """`client.schedules`: jobs the company's schedules enqueue periodically (SPEC §7)."""

    def __init__(self, send: Send, routes: Callable[[], Routes]) -> None:
        self._send = send
        self._routes = routes

    def create(
        self,
        job_type: str,
        input: Mapping[str, Any] | None = None,  # the API's field name
        *,
        cron: str | None = None,
        interval_seconds: int | None = None,
        timezone: str | None = None,
        source_task_id: str | None = None,
        priority: int | None = None,
    ) -> JobDict:
        """A new schedule (exactly one of cron and interval_seconds), with its nextRunAt."""
        call = ScheduleCalls(self._routes()).create(
            job_type,
            input,
            cron=cron,
            interval_seconds=interval_seconds,
            timezone=timezone,
            source_task_id=source_task_id,
            priority=priority,
        )
        result: JobDict = self._send(call)
        return result

    def list(self) -> Items:
        return list(self._send(ScheduleCalls(self._routes()).list())["items"])

    def delete(self, schedule_id: str) -> None:
        self._send(ScheduleCalls(self._routes()).delete(schedule_id))


class AsyncWebhooks:
    """`AsyncClient.webhooks`: Webhooks' methods, awaited."""

    def __init__(self, send: SendAsync, routes: Callable[[], Awaitable[Routes]]) -> None:
        self._send = send
        self._routes = routes

    async def create(self, url: str, events: list[str] | None = None) -> JobDict:
        result: JobDict = await self._send(WebhookCalls(await self._routes()).create(url, events))
        return result

    async def list(self) -> Items:
        return list((await self._send(WebhookCalls(await self._routes()).list()))["items"])

    async def delete(self, webhook_id: str) -> None:
        await self._send(WebhookCalls(await self._routes()).delete(webhook_id))

    async def deliveries(
        self, webhook_id: str, *, limit: int | None = None, status: str | None = None
    ) -> Items:
        call = WebhookCalls(await self._routes()).deliveries(webhook_id, limit, status)
        return list((await self._send(call))["items"])


class AsyncSchedules:
    """`AsyncClient.schedules`: Schedules' methods, awaited."""

    def __init__(self, send: SendAsync, routes: Callable[[], Awaitable[Routes]]) -> None:
        self._send = send
        self._routes = routes

    async def create(
        self,
        job_type: str,
        input: Mapping[str, Any] | None = None,  # the API's field name
        *,
        cron: str | None = None,
        interval_seconds: int | None = None,
        timezone: str | None = None,
        source_task_id: str | None = None,
        priority: int | None = None,
    ) -> JobDict:
        call = ScheduleCalls(await self._routes()).create(
            job_type,
            input,
            cron=cron,
            interval_seconds=interval_seconds,
            timezone=timezone,
            source_task_id=source_task_id,
            priority=priority,
        )
        result: JobDict = await self._send(call)
        return result

    async def list(self) -> Items:
        return list((await self._send(ScheduleCalls(await self._routes()).list()))["items"])

    async def delete(self, schedule_id: str) -> None:
        await self._send(ScheduleCalls(await self._routes()).delete(schedule_id))
