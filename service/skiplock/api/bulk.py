"""Bulk routes: `POST …/content-jobs/cancel` and `…/content-jobs/retry` (SPEC §4, §8).

Checks in SPEC §4's order: 401, 404 (a companyId that is not a UUID), 403 (another company's
key, or a read-only stream token), then the body (415, 413, 400, 422). A request without a
body (no Content-Type, nothing sent) is the empty filter: every job the change applies to.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from skiplock import bulk
from skiplock.api.auth import authorize
from skiplock.api.bodies import read_json
from skiplock.api.errors import ApiError
from skiplock.api.jobs import MAX_SOURCE_TASK_ID

FILTER_FIELDS = ("status", "jobType", "sourceTaskId")
MAX_JOB_TYPE = 200


async def cancel_jobs(request: Request) -> JSONResponse:
    auth = await authorize(request, write=True)
    job_filter = job_filter_of(await _body(request), bulk.CANCELABLE)
    pool = request.app.state.pool
    count = await bulk.cancel_matching(pool.connection, auth.company_id, job_filter)
    return JSONResponse({"count": count})


async def retry_jobs(request: Request) -> JSONResponse:
    auth = await authorize(request, write=True)
    job_filter = job_filter_of(await _body(request), bulk.RETRYABLE)
    pool = request.app.state.pool
    count = await bulk.retry_matching(pool.connection, auth.company_id, job_filter)
    return JSONResponse({"count": count})


async def _body(request: Request) -> Any:
    headers = request.headers
    nothing_sent = (
        "content-type" not in headers
        and headers.get("content-length", "0") == "0"
        and "transfer-encoding" not in headers
    )
    return {} if nothing_sent else await read_json(request)


def job_filter_of(body: Any, allowed: tuple[str, ...]) -> bulk.JobFilter:
    """The filter a body asks for, or ApiError 422 naming the field. An absent or null field,
    or an empty status list, does not filter."""
    if not isinstance(body, dict):
        raise ApiError(422, "the body must be a JSON object (the filter; {} for every job)")
    unknown = sorted(set(body) - set(FILTER_FIELDS))
    if unknown:
        raise ApiError(
            422, f"unknown field(s): {', '.join(unknown)} (a filter has {', '.join(FILTER_FIELDS)})"
        )
    return bulk.JobFilter(
        statuses=_statuses(body.get("status"), allowed),
        job_type=_text(body.get("jobType"), "jobType", MAX_JOB_TYPE),
        source_task_id=_text(body.get("sourceTaskId"), "sourceTaskId", MAX_SOURCE_TASK_ID),
    )


def _statuses(value: Any, allowed: tuple[str, ...]) -> tuple[str, ...]:
    if value is None or value == []:
        return allowed
    choices = " and ".join(f'"{s}"' for s in allowed)
    if not isinstance(value, list) or not all(isinstance(s, str) and s in allowed for s in value):
        raise ApiError(422, f"status must be a list of {choices} (absent: both)")
    return tuple(dict.fromkeys(value))


def _text(value: Any, name: str, max_length: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= max_length:
        raise ApiError(422, f"{name} must be a string of 1 to {max_length} characters")
    return value
