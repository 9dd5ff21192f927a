"""Job routes: submit, read, list, cancel, retry, stats, stream tokens (SPEC §4).

Every route checks in SPEC §4's order: 401, 404 (a path id that is not a UUID), 403, then
the body (415, 413, 400, 422), then 404 for a job that is not this company's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from skiplock import keys, store
from skiplock.api import pages
from skiplock.api.auth import authorize
from skiplock.api.bodies import read_json
from skiplock.api.errors import ApiError
from skiplock.events import utc_text
from skiplock.handlers import InvalidInput, Registry
from skiplock.ids import uuid7

STATUSES = ("queued", "running", "done", "failed", "canceled")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_IDEMPOTENCY_KEY = 255
MAX_SOURCE_TASK_ID = 1000
# A full queue drains at the workers' pace: a client told to come back at once would only
# knock again and again.
QUOTA_RETRY_AFTER_SECONDS = 5
SUBMIT_FIELDS = {
    "jobType",
    "input",
    "sourceTaskId",
    "priority",
    "runAt",
    "maxAttempts",
    "timeoutSeconds",
}
RANGES = {
    "priority": (-1000, 1000, 0),
    "maxAttempts": (1, 100, 3),
    "timeoutSeconds": (1, 604_800, None),
}


def job_json(row: dict[str, Any]) -> dict[str, Any]:
    """A job as the API shows it (SPEC §4), camelCase, timestamps RFC 3339 UTC."""

    def when(value: datetime | None) -> str | None:
        return utc_text(value) if value is not None else None

    def text(value: Any) -> str | None:
        return str(value) if value is not None else None

    return {
        "id": str(row["id"]),
        "companyId": str(row["company_id"]),
        "jobType": row["job_type"],
        "status": row["status"],
        "input": row["input"],
        "resultAssetId": text(row["result_asset_id"]),
        "errorMessage": row["error_message"],
        "sourceTaskId": row["source_task_id"],
        "priority": row["priority"],
        "runAt": when(row["run_at"]),
        "attempts": row["attempts"],
        "maxAttempts": row["max_attempts"],
        "progress": row["progress"],
        "startedAt": when(row["started_at"]),
        "finishedAt": when(row["finished_at"]),
        "createdAt": when(row["created_at"]),
        "updatedAt": when(row["updated_at"]),
    }


# ------------------------------------------------------------------------------------------
# Submit
# ------------------------------------------------------------------------------------------


async def submit_job(request: Request) -> JSONResponse:
    auth = await authorize(request, write=True)
    body = await read_json(request)
    fields = _submit_fields(body, request.app.state.registry)
    idempotency_key = _idempotency_key(request)
    request_sha256 = _canonical_sha256(fields) if idempotency_key else None
    params = {
        "id": uuid7(),
        "company_id": auth.company_id,
        "job_type": fields["jobType"],
        "input": Jsonb(fields["input"]),
        "source_task_id": fields["sourceTaskId"],
        "priority": fields["priority"],
        "run_at": fields.get("runAt"),
        "max_attempts": fields["maxAttempts"],
        "timeout_seconds": fields["timeoutSeconds"],
        "idempotency_key": idempotency_key,
        "request_sha256": request_sha256,
    }
    row = await _insert(request, params)
    if row is None and idempotency_key is not None:  # the key is taken: replay or conflict
        async with request.app.state.pool.connection() as conn:
            row = await store.find_job_by_idempotency_key(conn, auth.company_id, idempotency_key)
        if row is not None and row["idempotency_request_sha256"] != request_sha256:
            raise ApiError(
                409, "this Idempotency-Key was already used with a different request body"
            )
    if row is None:  # keys are never deleted, so only a vanished row could lead here
        raise ApiError(409, "this Idempotency-Key is held by a job that no longer exists")
    location = f"/companies/{auth.company_id}/content-jobs/{row['id']}"
    return JSONResponse(
        {
            "jobId": str(row["id"]),
            "status": row["status"],
            "createdAt": utc_text(row["created_at"]),
        },
        status_code=202,
        headers={"Location": location},
    )


async def _insert(request: Request, params: dict[str, Any]) -> dict[str, Any] | None:
    """The new job's row; 429 when the company's max_queued refuses it (SPEC §3: checked by
    the insert trigger, so nothing is stored, and it comes last of the checks)."""
    try:
        row: dict[str, Any] | None = await request.app.state.submits.insert(params)
    except psycopg.errors.CheckViolation as exc:
        if exc.diag.constraint_name != "max_queued":
            raise
        raise ApiError(
            429,
            f"{exc.diag.message_primary}; retry once some have started",
            headers={"Retry-After": str(QUOTA_RETRY_AFTER_SECONDS)},
        ) from None
    return row


def _submit_fields(body: Any, registry: Registry) -> dict[str, Any]:
    """The submit body checked and with defaults filled in; ApiError 422 naming the field."""
    if not isinstance(body, dict):
        raise ApiError(422, "the body must be a JSON object")
    unknown = sorted(set(body) - SUBMIT_FIELDS)
    if unknown:
        raise ApiError(422, f"unknown field(s): {', '.join(unknown)}")
    fields = _job_type_and_input(body, registry)
    source_task_id = body.get("sourceTaskId")
    if source_task_id is not None and (
        not isinstance(source_task_id, str) or len(source_task_id) > MAX_SOURCE_TASK_ID
    ):
        raise ApiError(
            422, f"sourceTaskId must be a string of at most {MAX_SOURCE_TASK_ID} characters"
        )
    fields["sourceTaskId"] = source_task_id
    for name, (low, high, default) in RANGES.items():
        fields[name] = _whole_number(body.get(name), name, low, high, default)
    if body.get("runAt") is not None:
        fields["runAt"] = _run_at(body["runAt"])
    return fields


def _whole_number(value: Any, name: str, low: int, high: int, default: int | None) -> int | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(422, f"{name} must be a whole number from {low} to {high}")
    return value


def _job_type_and_input(body: dict[str, Any], registry: Registry) -> dict[str, Any]:
    job_type = body.get("jobType")
    if not isinstance(job_type, str) or not job_type:
        raise ApiError(422, "jobType is required (a registered job type)")
    if job_type not in registry:
        known = ", ".join(registry.names()) or "none"
        raise ApiError(422, f"unknown jobType {job_type!r} (registered: {known})")
    params = body.get("input")
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise ApiError(422, "input must be a JSON object")
    try:
        registry.get(job_type).check_input(params)
    except InvalidInput as exc:
        raise ApiError(422, str(exc)) from None
    return {"jobType": job_type, "input": params}


def _run_at(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
            # In UTC too, the instant must lie within years 1..9999 (Python's and JSON's).
            if parsed.tzinfo is not None and 1 < parsed.astimezone(UTC).year < 9999:
                return parsed
        except (ValueError, OverflowError):
            pass
    raise ApiError(
        422, "runAt must be an RFC 3339 timestamp with a time zone, e.g. 2026-01-31T12:00:00Z"
    )


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY:
        raise ApiError(422, f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
    return key


def _canonical_sha256(fields: dict[str, Any]) -> str:
    """The request, parsed, defaults filled in, canonicalised (SPEC §4): runAt only if given."""
    canonical = dict(fields)
    if "runAt" in canonical:
        canonical["runAt"] = utc_text(canonical["runAt"])
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------------------------
# Read, list, cancel, retry, stats
# ------------------------------------------------------------------------------------------


async def get_job(request: Request) -> JSONResponse:
    auth = await authorize(request, "jobId")
    async with request.app.state.pool.connection() as conn:
        row = await _existing_job(conn, auth.company_id, auth.ids["jobId"])
    return JSONResponse(job_json(row))


async def _existing_job(conn: Any, company_id: uuid.UUID, job_id: uuid.UUID) -> dict[str, Any]:
    """The company's job, or ApiError 404 (another company's job is not found either)."""
    row = await store.find_job(conn, company_id, job_id)
    if row is None:
        raise ApiError(404, "no such job")
    return row


async def list_jobs(request: Request) -> Response:
    auth = await authorize(request)
    query = request.query_params
    status = query.get("status") or None
    if status is not None and status not in STATUSES:
        raise ApiError(422, f"status must be one of {', '.join(STATUSES)}")
    limit = _limit(query.get("limit"))
    before = _decode_cursor(query["cursor"]) if query.get("cursor") else None
    job_type = query.get("jobType") or None
    source_task_id = query.get("sourceTaskId") or None
    if "\x00" in (job_type or "") + (source_task_id or ""):
        raise ApiError(422, "query values cannot contain NUL characters")
    params = {
        "company_id": auth.company_id,
        "status": status,
        "job_type": job_type,
        "source_task_id": source_task_id,
        "before_created_at": before[0] if before else None,
        "before_id": before[1] if before else None,
        "limit": limit + 1,
    }
    async with request.app.state.pool.connection() as conn:
        rows = pages.stream_rows(conn, "list_jobs", params)
        items, after = await pages.bounded_page(rows, limit, job_json)
    next_cursor = _encode_cursor(after) if after is not None else None
    return Response(pages.page_body(items, next_cursor), media_type="application/json")


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    # The length check comes first: int() of thousands of digits is slow, then refused.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4) or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(422, f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def _encode_cursor(row: dict[str, Any]) -> str:
    raw = f"{row['created_at'].isoformat()}|{row['id']}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, job_id = raw.split("|")
        parsed = datetime.fromisoformat(created_at)
        if parsed.tzinfo is None:
            raise ValueError
        return parsed, uuid.UUID(job_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(422, "cursor is not one this API gave out") from None


async def cancel_job(request: Request) -> JSONResponse:
    auth = await authorize(request, "jobId", write=True)
    job_id = auth.ids["jobId"]
    async with request.app.state.pool.connection() as conn:
        row = await store.cancel_job(conn, auth.company_id, job_id)
        if row is None:  # not cancelable: why?
            row = await _existing_job(conn, auth.company_id, job_id)
            if row["status"] != "canceled":
                raise ApiError(
                    409,
                    f"the job is already {row['status']}; "
                    "only queued or running jobs can be canceled",
                )
    return JSONResponse(job_json(row))


async def retry_job(request: Request) -> JSONResponse:
    auth = await authorize(request, "jobId", write=True)
    job_id = auth.ids["jobId"]
    async with request.app.state.pool.connection() as conn:
        row = await store.retry_job(conn, auth.company_id, job_id)
        if row is None:  # not retryable: why?
            row = await _existing_job(conn, auth.company_id, job_id)
            raise ApiError(
                409, f"the job is {row['status']}; only failed or canceled jobs can be retried"
            )
    return JSONResponse(job_json(row))


async def company_stats(request: Request) -> JSONResponse:
    auth = await authorize(request)
    async with request.app.state.pool.connection() as conn:
        rows = await store.company_stats(conn, auth.company_id)
    items = [
        {
            "jobType": r["job_type"],
            "status": r["status"],
            "count": r["count"],
            "oldestCreatedAt": utc_text(r["oldest_created_at"]),
            "paused": r["paused"],  # for every company, or for this one (SPEC §8)
        }
        for r in rows
    ]
    return JSONResponse({"items": items})


async def create_stream_token(request: Request) -> JSONResponse:
    auth = await authorize(request, write=True)  # an API key only, never a token
    async with request.app.state.pool.connection() as conn:
        token = await keys.create_stream_token(
            conn, keys.ResolvedKey(key_id=auth.caller.key_id, company_id=auth.company_id)
        )
    return JSONResponse(
        {"token": token.token, "expiresAt": utc_text(token.expires_at)}, status_code=201
    )
