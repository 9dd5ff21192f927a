"""Schedule routes: create, list, delete (SPEC §7).

A schedule's jobType and input are checked exactly as a submit's are (the same code, in
jobs.py), so a schedule can never make a job that a submit would have refused. Checks run
in SPEC §4's order, like every route.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from skiplock import store
from skiplock.api.auth import authorize
from skiplock.api.bodies import read_json
from skiplock.api.errors import ApiError
from skiplock.api.jobs import _submit_fields, _whole_number
from skiplock.events import utc_text
from skiplock.handlers import Registry
from skiplock.schedules import DEFAULT_TIMEZONE, MAX_INTERVAL_SECONDS, InvalidSchedule, Rule

MAX_SCHEDULES_PER_COMPANY = 100
JOB_FIELDS = ("jobType", "input", "sourceTaskId", "priority")  # what each job gets
SCHEDULE_FIELDS = {*JOB_FIELDS, "cron", "intervalSeconds", "timezone"}


def schedule_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "jobType": row["job_type"],
        "input": row["input"],
        "cron": row["cron"],
        "intervalSeconds": row["interval_seconds"],
        "timezone": row["timezone"],
        "sourceTaskId": row["source_task_id"],
        "priority": row["priority"],
        "nextRunAt": utc_text(row["next_run_at"]),
        "createdAt": utc_text(row["created_at"]),
    }


async def create_schedule(request: Request) -> JSONResponse:
    auth = await authorize(request, write=True)
    fields, rule = _schedule_fields(await read_json(request), request.app.state.registry)
    params = {
        "id": uuid.uuid4(),
        "company_id": auth.company_id,
        "job_type": fields["jobType"],
        "input": Jsonb(fields["input"]),
        "cron": rule.cron,
        "interval_seconds": rule.interval_seconds,
        "timezone": rule.timezone,
        "source_task_id": fields["sourceTaskId"],
        "priority": fields["priority"],
        "next_run_at": rule.first_run(datetime.now(UTC)),
        "max_schedules": MAX_SCHEDULES_PER_COMPANY,
    }
    async with request.app.state.pool.connection() as conn, conn.transaction():
        await store.rows(conn, "lock_company", {"company_id": auth.company_id})
        created = await store.rows(conn, "create_schedule", params)
    if not created:
        raise ApiError(
            409,
            f"this company has {MAX_SCHEDULES_PER_COMPANY} schedules already, the most it "
            "may have; delete one first",
        )
    return JSONResponse(schedule_json(created[0]), status_code=201)


def _schedule_fields(body: Any, registry: Registry) -> tuple[dict[str, Any], Rule]:
    """The creation body checked, with defaults; ApiError 422 naming the field. jobType,
    input, sourceTaskId and priority go through the submit's own check (jobs.py)."""
    if not isinstance(body, dict):
        raise ApiError(422, "the body must be a JSON object")
    unknown = sorted(set(body) - SCHEDULE_FIELDS)
    if unknown:
        raise ApiError(422, f"unknown field(s): {', '.join(unknown)}")
    as_submit = {name: body[name] for name in JOB_FIELDS if name in body}
    return _submit_fields(as_submit, registry), _rule(body)


def _rule(body: dict[str, Any]) -> Rule:
    cron, interval = body.get("cron"), body.get("intervalSeconds")
    if (cron is None) == (interval is None):
        raise ApiError(422, "give exactly one of cron and intervalSeconds")
    if interval is not None:
        interval = _whole_number(interval, "intervalSeconds", 1, MAX_INTERVAL_SECONDS, None)
    if cron is not None and not isinstance(cron, str):
        raise ApiError(422, "cron must be a string of 5 fields, e.g. '*/15 * * * *'")
    timezone = body.get("timezone")
    try:
        return Rule(
            cron=cron,
            interval_seconds=interval,
            timezone=DEFAULT_TIMEZONE if timezone is None else timezone,
        )
    except InvalidSchedule as exc:
        raise ApiError(422, str(exc)) from None


async def list_schedules(request: Request) -> JSONResponse:
    auth = await authorize(request)
    async with request.app.state.pool.connection() as conn:
        rows = await store.rows(conn, "list_schedules", {"company_id": auth.company_id})
    return JSONResponse({"items": [schedule_json(row) for row in rows]})


async def delete_schedule(request: Request) -> Response:
    auth = await authorize(request, "scheduleId", write=True)
    params = {"company_id": auth.company_id, "schedule_id": auth.ids["scheduleId"]}
    async with request.app.state.pool.connection() as conn:
        deleted = await store.rows(conn, "delete_schedule", params)
    if not deleted:
        raise ApiError(404, "no such schedule")
    return Response(status_code=204)
