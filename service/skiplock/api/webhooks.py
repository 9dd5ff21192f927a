"""Webhook routes: create, list, delete, and a webhook's deliveries (SPEC §7).

Checks run in SPEC §4's order: 401, 404 (a path id that is not a UUID), 403, then the body
(415, 413, 400, 422), then 404 for a webhook that is not this company's. The secret is in
the creation's answer only.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from skiplock import store, webhooks
from skiplock.api.auth import authorize
from skiplock.api.bodies import read_json
from skiplock.api.errors import ApiError
from skiplock.api.jobs import _limit
from skiplock.events import utc_text
from skiplock.settings import Settings

MAX_WEBHOOKS_PER_COMPANY = 20
WEBHOOK_FIELDS = {"url", "events"}
DELIVERY_STATUSES = ("pending", "delivered", "failed")


def webhook_json(row: dict[str, Any], *, secret: bool = False) -> dict[str, Any]:
    answer = {
        "id": str(row["id"]),
        "url": row["url"],
        "events": list(row["events"]),
        "createdAt": utc_text(row["created_at"]),
    }
    if secret:
        answer["secret"] = row["secret"]
    return answer


def delivery_json(row: dict[str, Any]) -> dict[str, Any]:
    def when(value: datetime | None) -> str | None:
        return utc_text(value) if value is not None else None

    return {
        "id": str(row["id"]),
        "eventId": row["event_id"],
        "jobId": str(row["job_id"]),
        "type": row["type"],
        "status": row["status"],
        "attempts": row["attempts"],
        "lastStatusCode": row["last_status_code"],
        "lastError": row["last_error"],
        "nextAttemptAt": when(row["next_attempt_at"]),
        "deliveredAt": when(row["delivered_at"]),
        "createdAt": when(row["created_at"]),
    }


async def create_webhook(request: Request) -> JSONResponse:
    auth = await authorize(request, write=True)
    url, events = _webhook_fields(await read_json(request), request.app.state.settings)
    params = {
        "id": uuid.uuid4(),
        "company_id": auth.company_id,
        "url": url,
        "events": list(events),
        "secret": webhooks.new_secret(),
        "max_webhooks": MAX_WEBHOOKS_PER_COMPANY,
    }
    async with request.app.state.pool.connection() as conn, conn.transaction():
        await store.rows(conn, "lock_company", {"company_id": auth.company_id})
        created = await store.rows(conn, "create_webhook", params)
    if not created:
        raise ApiError(
            409,
            f"this company has {MAX_WEBHOOKS_PER_COMPANY} webhooks already, the most it may "
            "have; delete one first",
        )
    return JSONResponse(webhook_json(created[0], secret=True), 201)


def _webhook_fields(body: Any, settings: Settings) -> tuple[str, tuple[str, ...]]:
    """(url, events) of a creation body, or ApiError 422 naming the field."""
    if not isinstance(body, dict):
        raise ApiError(422, "the body must be a JSON object")
    unknown = sorted(set(body) - WEBHOOK_FIELDS)
    if unknown:
        raise ApiError(422, f"unknown field(s): {', '.join(unknown)}")
    url = body.get("url")
    try:
        target = webhooks.parse_url(url)
    except webhooks.InvalidWebhookUrl as exc:
        raise ApiError(422, str(exc)) from None
    refused = None if settings.webhook_allow_private else webhooks.literal_refusal(target)
    if refused is not None:
        raise ApiError(
            422, f"url is refused: {refused} (SKIPLOCK_WEBHOOK_ALLOW_PRIVATE is not set)"
        )
    return str(url), _events(body.get("events"))


def _events(value: Any) -> tuple[str, ...]:
    if value is None:
        return webhooks.DEFAULT_EVENTS
    known = ", ".join(webhooks.EVENT_TYPES)
    if (
        not isinstance(value, list)
        or not value
        or len(value) > 2 * len(webhooks.EVENT_TYPES)  # room for repeats, no more
        or not all(isinstance(item, str) for item in value)
    ):
        raise ApiError(422, f"events must be a non-empty list of event types ({known})")
    unknown = [item for item in value if item not in webhooks.EVENT_TYPES]
    if unknown:
        raise ApiError(422, f"unknown event type(s) {unknown!r}; known: {known}")
    return tuple(dict.fromkeys(value))


async def list_webhooks(request: Request) -> JSONResponse:
    auth = await authorize(request)
    async with request.app.state.pool.connection() as conn:
        rows = await store.rows(conn, "list_webhooks", {"company_id": auth.company_id})
    return JSONResponse({"items": [webhook_json(row) for row in rows]})


async def delete_webhook(request: Request) -> Response:
    auth = await authorize(request, "webhookId", write=True)
    params = {"company_id": auth.company_id, "webhook_id": auth.ids["webhookId"]}
    async with request.app.state.pool.connection() as conn:
        deleted = await store.rows(conn, "delete_webhook", params)
    if not deleted:
        raise ApiError(404, "no such webhook")
    return Response(status_code=204)


async def list_deliveries(request: Request) -> JSONResponse:
    auth = await authorize(request, "webhookId")
    status = request.query_params.get("status") or None
    if status is not None and status not in DELIVERY_STATUSES:
        raise ApiError(422, f"status must be one of {', '.join(DELIVERY_STATUSES)}")
    params = {
        "company_id": auth.company_id,
        "webhook_id": auth.ids["webhookId"],
        "status": status,
        "limit": _limit(request.query_params.get("limit")),
    }
    async with request.app.state.pool.connection() as conn:
        rows = await store.rows(conn, "list_webhook_deliveries", params)
    if not rows:
        raise ApiError(404, "no such webhook")
    return JSONResponse({"items": [delivery_json(row) for row in rows if row["id"] is not None]})
