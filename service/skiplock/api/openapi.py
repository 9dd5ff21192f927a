"""/openapi.json: the OpenAPI 3.1 document of every route, built once per app.

Each route of the app is described by a row of OPERATIONS, keyed by (method, path
template) exactly as the route is declared in app.routes(), so the document follows the
routes it serves and a test can check that none is left out. The submit body is built from
the app's job registry: one `SubmitJob.<type>` variant per registered type, chosen by
`jobType` (a discriminator), each with that type's input schema as `Input.<type>`. The
document is built on the first request and cached on `app.state.openapi`: the registry is
complete by then, and the document never changes while the app runs.

Starlette answers HEAD on every GET route; HEAD is documented only where it is part of the
contract (asset content: size and ETag without the bytes).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

import skiplock
from skiplock import webhooks
from skiplock.api.bulk import MAX_JOB_TYPE
from skiplock.api.errors import HTTP_CODES
from skiplock.api.jobs import (
    DEFAULT_LIMIT,
    MAX_IDEMPOTENCY_KEY,
    MAX_LIMIT,
    MAX_SOURCE_TASK_ID,
    RANGES,
    STATUSES,
)
from skiplock.api.webhooks import DELIVERY_STATUSES
from skiplock.bulk import CANCELABLE, RETRYABLE
from skiplock.handlers import Registry
from skiplock.schedules import MAX_CRON_LENGTH, MAX_INTERVAL_SECONDS, MAX_TIMEZONE_LENGTH

Schema = dict[str, Any]

COMPANY = "/companies/{companyId}"
JOB = f"{COMPANY}/content-jobs/{{jobId}}"
ASSET = f"{COMPANY}/assets/{{assetId}}"


def ref(kind: str, name: str) -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def schema_ref(name: str) -> Schema:
    return ref("schemas", name)


def nullable(schema: Schema) -> Schema:
    """The schema, or null (OpenAPI 3.1 is JSON Schema 2020-12: a list of types)."""
    return {**schema, "type": [schema["type"], "null"]}


UUID: Schema = {"type": "string", "format": "uuid"}
TIMESTAMP: Schema = {"type": "string", "format": "date-time", "description": "RFC 3339, UTC"}
STATUS: Schema = {"type": "string", "enum": list(STATUSES)}


def _object(properties: dict[str, Schema], description: str = "") -> Schema:
    """A closed object whose properties are all always present."""
    schema: Schema = {
        "type": "object",
        "required": list(properties),
        "properties": properties,
        "additionalProperties": False,
    }
    return {**schema, "description": description} if description else schema


def _bulk_filter(statuses: tuple[str, ...], what: str) -> Schema:
    """The body of a bulk route: every field optional, absent or null = any."""
    return {
        "type": "object",
        "description": f"Which of the company's jobs are {what}; {{}} (or no body) = all of them.",
        "properties": {
            "status": {
                "type": ["array", "null"],
                "items": {"type": "string", "enum": list(statuses)},
                "description": "Only jobs in these statuses (absent or empty: all of them)",
            },
            "jobType": {"type": ["string", "null"], "minLength": 1, "maxLength": MAX_JOB_TYPE},
            "sourceTaskId": {
                "type": ["string", "null"],
                "minLength": 1,
                "maxLength": MAX_SOURCE_TASK_ID,
            },
        },
        "additionalProperties": False,
    }


# ------------------------------------------------------------------------------------------
# Schemas of the answers (what jobs.py, assets.py and app.py return)
# ------------------------------------------------------------------------------------------

SCHEMAS: dict[str, Schema] = {
    "Error": _object({"error": schema_ref("ErrorDetail")}, "Every error answer has this shape."),
    "ErrorDetail": _object(
        {
            "code": {
                "type": "string",
                "description": "Machine-readable: " + ", ".join(HTTP_CODES.values()),
            },
            "message": {"type": "string", "description": "What went wrong and what to change"},
        }
    ),
    "Progress": {
        "type": "object",
        "description": "The handler's latest report, written at most once a second.",
        "properties": {
            "fraction": {"type": "number", "minimum": 0, "maximum": 1},
            "message": {"type": ["string", "null"]},
        },
    },
    "Job": _object(
        {
            "id": UUID,
            "companyId": UUID,
            "jobType": {"type": "string"},
            "status": STATUS,
            "input": {"type": "object"},
            "resultAssetId": nullable(UUID),
            "errorMessage": {"type": ["string", "null"]},
            "sourceTaskId": {"type": ["string", "null"]},
            "priority": {"type": "integer", "minimum": -1000, "maximum": 1000},
            "runAt": TIMESTAMP,
            "attempts": {"type": "integer", "minimum": 0, "description": "runs claimed so far"},
            "maxAttempts": {"type": "integer", "minimum": 1, "maximum": 100},
            "progress": {"anyOf": [schema_ref("Progress"), {"type": "null"}]},
            "startedAt": nullable(TIMESTAMP),
            "finishedAt": nullable(TIMESTAMP),
            "createdAt": TIMESTAMP,
            "updatedAt": TIMESTAMP,
        },
        "A content job as the API shows it.",
    ),
    "JobList": _object(
        {
            "items": {"type": "array", "items": schema_ref("Job")},
            "nextCursor": {
                "type": ["string", "null"],
                "description": "Pass as ?cursor= for the next page; null on the last page",
            },
        },
        "A page of jobs, newest first.",
    ),
    "SubmitAccepted": _object(
        {"jobId": UUID, "status": STATUS, "createdAt": TIMESTAMP},
        "The job is queued (or, for a replayed Idempotency-Key, its current status).",
    ),
    "Stats": _object(
        {
            "items": {
                "type": "array",
                "items": _object(
                    {
                        "jobType": {"type": "string"},
                        "status": STATUS,
                        "count": {"type": "integer", "minimum": 1},
                        "oldestCreatedAt": TIMESTAMP,
                        "paused": {
                            "type": "boolean",
                            "description": "Claiming of this type is paused, for every "
                            "company or for this one (an operator's `skiplock jobs pause`)",
                        },
                    }
                ),
            }
        },
        "Job counts per job type and status.",
    ),
    "BulkCount": _object(
        {"count": {"type": "integer", "minimum": 0, "description": "How many jobs changed"}},
        "The outcome of a bulk cancel or retry.",
    ),
    "CancelFilter": _bulk_filter(CANCELABLE, "canceled: queued or running"),
    "RetryFilter": _bulk_filter(RETRYABLE, "queued again: failed or canceled"),
    "Caller": _object(
        {"companyId": UUID, "keyId": UUID},
        "Whose API key this is.",
    ),
    "StreamToken": _object(
        {"token": {"type": "string"}, "expiresAt": TIMESTAMP},
        "A read-only token for ?token= on the SSE and asset content routes (one hour).",
    ),
    "Asset": _object(
        {
            "id": UUID,
            "contentType": {"type": "string"},
            "byteSize": {"type": "integer", "minimum": 0},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "originalFilename": {"type": ["string", "null"]},
            "sourceTaskId": {"type": ["string", "null"]},
            "createdAt": TIMESTAMP,
        },
        "A stored output file's metadata.",
    ),
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "error": schema_ref("ErrorDetail"),
        },
    },
}


# ------------------------------------------------------------------------------------------
# Parameters
# ------------------------------------------------------------------------------------------


def _param(where: str, name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema,
        "description": description,
    }


def _filter(name: str, schema: Schema, description: str) -> Schema:
    """A query parameter of the list route, where an empty value means absent."""
    param = _param("query", name, schema, f"{description} (empty: as if absent)")
    return {**param, "allowEmptyValue": True}


PARAMETERS: dict[str, Schema] = {
    "companyId": _param("path", "companyId", UUID, "The company (tenant); not a UUID: 404"),
    "jobId": _param("path", "jobId", UUID, "The job; not a UUID or not this company's: 404"),
    "assetId": _param("path", "assetId", UUID, "The asset; not a UUID or not this company's: 404"),
    "status": _filter("status", STATUS, "Only jobs in this status"),
    "jobType": _filter("jobType", {"type": "string"}, "Only jobs of this type"),
    "sourceTaskId": _filter("sourceTaskId", {"type": "string"}, "Only jobs with this sourceTaskId"),
    "limit": _filter(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        f"Page size (default {DEFAULT_LIMIT}, at most {MAX_LIMIT})",
    ),
    "cursor": _filter("cursor", {"type": "string"}, "nextCursor of the previous page (keyset)"),
    "token": _param(
        "query",
        "token",
        {"type": "string"},
        "A stream token, for clients that cannot set Authorization (EventSource, <img>)",
    ),
    "lastEventId": _param(
        "query",
        "lastEventId",
        {"type": "string"},
        "Resume after this event id (as the Last-Event-ID header)",
    ),
    "Idempotency-Key": _param(
        "header",
        "Idempotency-Key",
        {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
        "The same key with the same body answers the same job; with another body, 409",
    ),
    "Last-Event-ID": _param(
        "header",
        "Last-Event-ID",
        {"type": "string"},
        "Replay the stream's events after this id, then go live",
    ),
    "Range": _param(
        "header",
        "Range",
        {"type": "string"},
        "One span, bytes=FIRST-LAST, FIRST- or -SUFFIX: answers 206 (416 past the end); "
        "a malformed or multiple Range is ignored",
    ),
    "If-Range": _param(
        "header", "If-Range", {"type": "string"}, "Honour Range only if this is the ETag"
    ),
    "If-None-Match": _param(
        "header", "If-None-Match", {"type": "string"}, "The ETag already held: answers 304"
    ),
}


# ------------------------------------------------------------------------------------------
# Responses
# ------------------------------------------------------------------------------------------

ERRORS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "The body is not valid JSON"),
    401: ("Unauthorized", "No or bad API key (or stream token)"),
    403: ("Forbidden", "A key or token of another company, or a read-only token"),
    404: ("NotFound", "A path id that is not a UUID, or not this company's"),
    409: ("Conflict", "The request conflicts with the current state"),
    413: ("PayloadTooLarge", "The body is over 1 MiB"),
    415: ("UnsupportedMediaType", "The body is not sent as application/json"),
    422: ("Invalid", "A field or query parameter is invalid"),
    429: (
        "TooManyRequests",
        "A limit of the company is reached (max_queued for a submit, open event streams for "
        "SSE); retry after Retry-After",
    ),
    503: (
        "Unavailable",
        "The database (for asset content: the store holding it, or this server's settings "
        "for that store) is unavailable; retry shortly",
    ),
}


def _error_response(status: int, description: str) -> Schema:
    response: Schema = {
        "description": description,
        "content": {"application/json": {"schema": schema_ref("Error")}},
    }
    if status in (429, 503):
        response["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    return response


def _json(description: str, schema: str, headers: Schema | None = None) -> Schema:
    response: Schema = {
        "description": description,
        "content": {"application/json": {"schema": schema_ref(schema)}},
    }
    return {**response, "headers": headers} if headers else response


def _header(description: str, schema: Schema | None = None, required: bool = False) -> Schema:
    header: Schema = {"description": description, "schema": schema or {"type": "string"}}
    return {**header, "required": True} if required else header


SSE = {
    "description": (
        "A stream of `id: <event id>`, `event: <content_job.* | status | reset>`, "
        "`data: <JSON>` frames, with a comment line at least every 15 s while idle"
    ),
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}
# Sent with every /content answer (200, 206, 304): a stored SVG or HTML file can never run
# script on the API's origin.
CONTENT_HEADERS = {
    "ETag": _header('The quoted sha256: "<sha256>"', {"type": "string"}, required=True),
    "Content-Disposition": _header(
        "attachment; filename=\"<safe name>\"; filename*=UTF-8''<name>", required=True
    ),
    "X-Content-Type-Options": _header("nosniff", {"const": "nosniff"}, required=True),
    "Content-Security-Policy": _header("sandbox", {"const": "sandbox"}, required=True),
    "Accept-Ranges": _header("bytes", {"const": "bytes"}),
    "Cache-Control": _header("private: the bytes are a tenant's"),
}


def _content_responses(method: str) -> dict[str, Schema]:
    """/content's answers; HEAD has no body and ignores Range (RFC 9110 §14.2)."""
    body = {"content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}
    ranged = {**CONTENT_HEADERS, "Content-Range": _header("bytes FIRST-LAST/SIZE", required=True)}
    whole: Schema = {"description": "The file", "headers": CONTENT_HEADERS}
    part: Schema = {"description": "Part of the file (a Range)", "headers": ranged}
    responses = {
        "200": {**whole, **body} if method == "GET" else whole,
        "206": {**part, **body},
        "304": {
            "description": "Not modified (If-None-Match names the ETag)",
            "headers": CONTENT_HEADERS,
        },
        "307": {
            "description": (
                "An asset in S3 with SKIPLOCK_S3_PRESIGN_SECONDS > 0: GET the bytes from this "
                "presigned URL (valid that long; the store sends them as an attachment)"
            ),
            "headers": {
                "Location": _header("The presigned URL", required=True),
                "Cache-Control": _header("no-store", {"const": "no-store"}),
            },
        },
        "416": {
            "description": "The Range asks only for bytes past the end",
            "headers": {"Content-Range": _header("bytes */SIZE", required=True)},
            "content": {"application/json": {"schema": schema_ref("Error")}},
        },
    }
    if method == "HEAD":
        del responses["206"], responses["416"]
    return responses


def _file(description: str, media_type: str) -> dict[str, Schema]:
    """The answers of a dashboard file: 200 with the file, nothing else."""
    return {
        "200": {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}
    }


# ------------------------------------------------------------------------------------------
# The routes
# ------------------------------------------------------------------------------------------

KEY: list[Schema] = [{"bearer": []}]
KEY_OR_TOKEN: list[Schema] = [{"bearer": []}, {"streamToken": []}]
OPEN: list[Schema] = []
READ_ERRORS = (401, 403, 404, 503)
# 429: the company's open streams on this server are at their limit (503: the server's).
STREAM_ERRORS = (401, 403, 404, 429, 503)


@dataclass(frozen=True)
class Operation:
    operation_id: str
    summary: str
    tag: str
    responses: dict[str, Schema]
    errors: tuple[int, ...] = ()
    parameters: tuple[str, ...] = ()
    security: list[Schema] | None = None  # None: the document's default (an API key)
    body: str | None = None  # the request body's schema, if any
    body_required: bool = True


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/healthz"): Operation(
        "healthz",
        "200 when the database answers, else 503",
        "service",
        {
            "200": _json("The database answers", "Health"),
            "503": _json("The database does not answer", "Health"),
        },
        security=OPEN,
    ),
    ("GET", "/whoami"): Operation(
        "whoami",
        "The company and key id of the API key presented",
        "service",
        {"200": _json("The key's company and id", "Caller")},
        (401, 503),
    ),
    ("GET", "/metrics"): Operation(
        "metrics",
        "Prometheus metrics (no tenant ids)",
        "service",
        {
            "200": {
                "description": "Prometheus text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
        security=OPEN,
    ),
    ("GET", "/openapi.json"): Operation(
        "openapi",
        "This document",
        "service",
        {
            "200": {
                "description": "OpenAPI 3.1",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
        security=OPEN,
    ),
    ("POST", f"{COMPANY}/content-jobs"): Operation(
        "submitJob",
        "Queue a job; answers at once",
        "jobs",
        {
            "202": _json(
                "Queued (or the job this Idempotency-Key already made)",
                "SubmitAccepted",
                {"Location": _header("The job's URL")},
            )
        },
        (400, 401, 403, 404, 409, 413, 415, 422, 429, 503),
        ("companyId", "Idempotency-Key"),
        body="SubmitJob",
    ),
    ("GET", f"{COMPANY}/content-jobs"): Operation(
        "listJobs",
        "The company's jobs, newest first, keyset-paginated",
        "jobs",
        {"200": _json("A page of jobs", "JobList")},
        (401, 403, 404, 422, 503),
        ("companyId", "status", "jobType", "sourceTaskId", "limit", "cursor"),
    ),
    ("POST", f"{COMPANY}/content-jobs/cancel"): Operation(
        "cancelJobs",
        "Cancel every queued or running job that matches the filter, in batches of 1,000 "
        "(running handlers stop within a second)",
        "jobs",
        {"200": _json("How many jobs were canceled (0 when none matched)", "BulkCount")},
        (400, 401, 403, 404, 413, 415, 422, 503),
        ("companyId",),
        body="CancelFilter",
        body_required=False,
    ),
    ("POST", f"{COMPANY}/content-jobs/retry"): Operation(
        "retryJobs",
        "Queue every failed or canceled job that matches the filter again, attempts reset, "
        "in batches of 1,000",
        "jobs",
        {"200": _json("How many jobs were queued again (0 when none matched)", "BulkCount")},
        (400, 401, 403, 404, 413, 415, 422, 503),
        ("companyId",),
        body="RetryFilter",
        body_required=False,
    ),
    ("GET", JOB): Operation(
        "getJob",
        "One job",
        "jobs",
        {"200": _json("The job", "Job")},
        READ_ERRORS,
        ("companyId", "jobId"),
    ),
    ("POST", f"{JOB}/cancel"): Operation(
        "cancelJob",
        "Cancel a queued or running job (a canceled one: no change)",
        "jobs",
        {"200": _json("The job, canceled", "Job")},
        (401, 403, 404, 409, 503),
        ("companyId", "jobId"),
    ),
    ("POST", f"{JOB}/retry"): Operation(
        "retryJob",
        "Queue a failed or canceled job again, attempts reset",
        "jobs",
        {"200": _json("The job, queued again", "Job")},
        (401, 403, 404, 409, 503),
        ("companyId", "jobId"),
    ),
    ("GET", f"{JOB}/events"): Operation(
        "jobEvents",
        "SSE: the job as it is (event: status), then its events, until a terminal one",
        "streams",
        {"200": SSE},
        STREAM_ERRORS,
        ("companyId", "jobId", "token", "lastEventId", "Last-Event-ID"),
        KEY_OR_TOKEN,
    ),
    ("GET", f"{COMPANY}/events"): Operation(
        "companyEvents",
        "SSE: every content_job.* event of the company",
        "streams",
        {"200": SSE},
        STREAM_ERRORS,
        ("companyId", "token", "lastEventId", "Last-Event-ID"),
        KEY_OR_TOKEN,
    ),
    ("GET", f"{COMPANY}/stats"): Operation(
        "companyStats",
        "Job counts per job type and status",
        "jobs",
        {"200": _json("The counts", "Stats")},
        READ_ERRORS,
        ("companyId",),
    ),
    ("POST", f"{COMPANY}/stream-tokens"): Operation(
        "createStreamToken",
        "A read-only token for ?token= (needs an API key)",
        "streams",
        {"201": _json("The token", "StreamToken")},
        READ_ERRORS,
        ("companyId",),
    ),
    ("GET", ASSET): Operation(
        "getAsset",
        "An asset's metadata",
        "assets",
        {"200": _json("The asset", "Asset")},
        READ_ERRORS,
        ("companyId", "assetId"),
    ),
    ("GET", f"{ASSET}/content"): Operation(
        "getAssetContent",
        "An asset's bytes, streamed; Range and If-None-Match honoured",
        "assets",
        _content_responses("GET"),
        READ_ERRORS,
        ("companyId", "assetId", "token", "Range", "If-Range", "If-None-Match"),
        KEY_OR_TOKEN,
    ),
    ("GET", "/ui"): Operation(
        "dashboard",
        "The dashboard: a page that lists a company's jobs and follows them live",
        "dashboard",
        _file("The page; it asks for an API key and keeps it in sessionStorage", "text/html"),
        security=OPEN,
    ),
    ("GET", "/ui/app.js"): Operation(
        "dashboardScript",
        "The dashboard's script",
        "dashboard",
        _file("JavaScript", "text/javascript"),
        security=OPEN,
    ),
    ("GET", "/ui/automation.js"): Operation(
        "dashboardAutomationScript",
        "The dashboard's webhooks and schedules",
        "dashboard",
        _file("JavaScript", "text/javascript"),
        security=OPEN,
    ),
    ("GET", "/ui/app.css"): Operation(
        "dashboardStyle",
        "The dashboard's stylesheet",
        "dashboard",
        _file("CSS", "text/css"),
        security=OPEN,
    ),
    ("HEAD", f"{ASSET}/content"): Operation(
        "headAssetContent",
        "An asset's headers (size, ETag) without the bytes",
        "assets",
        _content_responses("HEAD"),
        READ_ERRORS,
        ("companyId", "assetId", "token", "If-None-Match"),
        KEY_OR_TOKEN,
    ),
}


def _operation(op: Operation, method: str) -> Schema:
    responses = dict(op.responses)
    for status in sorted(op.errors):
        responses[str(status)] = ref("responses", ERRORS[status][0])
    if method == "HEAD":  # no body in any answer to HEAD
        responses = {code: _without_content(r) for code, r in responses.items()}
    document: Schema = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": [ref("parameters", name) for name in op.parameters],
        "responses": responses,
    }
    if op.security is not None:
        document["security"] = op.security
    if op.body is not None:
        document["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": schema_ref(op.body)}},
        }
    return document


def _without_content(response: Schema) -> Schema:
    if "$ref" in response:
        name = response["$ref"].rsplit("/", 1)[-1]
        return {"description": next(d for n, d in ERRORS.values() if n == name)}
    return {k: v for k, v in response.items() if k != "content"}


def _paths(routes: list[BaseRoute]) -> dict[str, Schema]:
    paths: dict[str, Schema] = {}
    for route in routes:
        if not isinstance(route, Route) or not route.methods:
            continue
        for method in sorted(route.methods):
            op = OPERATIONS.get((method, route.path))
            if op is not None:
                paths.setdefault(route.path, {})[method.lower()] = _operation(op, method)
    return paths


# ------------------------------------------------------------------------------------------
# The submit body, one variant per registered job type
# ------------------------------------------------------------------------------------------


def _submit_fields() -> dict[str, Schema]:
    fields: dict[str, Schema] = {
        "sourceTaskId": {"type": ["string", "null"], "maxLength": 1000},
        "runAt": {
            "type": ["string", "null"],
            "format": "date-time",
            "description": "Not before this time (RFC 3339 with a time zone); default now",
        },
    }
    for name, (low, high, default) in RANGES.items():
        fields[name] = {"type": ["integer", "null"], "minimum": low, "maximum": high}
        if default is not None:
            fields[name]["default"] = default
    return fields


def _submit_variant(name: str, input_schema: Schema | None) -> tuple[Schema, Schema]:
    """(Input.<name>, SubmitJob.<name>): the type's input schema and its submit body."""
    input_doc = copy.deepcopy(input_schema) if input_schema is not None else {"type": "object"}
    # An absent or null input is {}: optional only when {} passes the type's schema.
    optional = input_schema is None or Draft202012Validator(input_schema).is_valid({})
    input_ref = schema_ref(f"Input.{name}")
    body: Schema = {
        "type": "object",
        "required": ["jobType"] if optional else ["jobType", "input"],
        "properties": {
            "jobType": {"type": "string", "const": name},
            "input": {"anyOf": [input_ref, {"type": "null"}]} if optional else input_ref,
            **_submit_fields(),
        },
        "additionalProperties": False,
    }
    return input_doc, body


def _submit_schemas(registry: Registry) -> dict[str, Schema]:
    schemas: dict[str, Schema] = {}
    mapping: dict[str, str] = {}
    for name in registry.names():
        input_doc, body = _submit_variant(name, registry.get(name).schema)
        schemas[f"Input.{name}"] = input_doc
        schemas[f"SubmitJob.{name}"] = body
        mapping[name] = f"#/components/schemas/SubmitJob.{name}"
    schemas["SubmitJob"] = {
        "description": "A job to queue; `input` must satisfy the job type's schema.",
        "type": "object",
        "required": ["jobType"],
        "properties": {"jobType": {"type": "string", "enum": list(mapping)}},
        "oneOf": [{"$ref": target} for target in mapping.values()],
        "discriminator": {"propertyName": "jobType", "mapping": mapping},
    }
    return schemas


# ------------------------------------------------------------------------------------------
# Webhooks and schedules (SPEC §7)
# ------------------------------------------------------------------------------------------

WEBHOOK = f"{COMPANY}/webhooks/{{webhookId}}"
SCHEDULE = f"{COMPANY}/schedules/{{scheduleId}}"
EVENT_TYPE: Schema = {"type": "string", "enum": list(webhooks.EVENT_TYPES)}
URL: Schema = {
    "type": "string",
    "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://",
    "maxLength": webhooks.MAX_URL_LENGTH,
    "description": "http or https; a host that is or resolves to a loopback, private, "
    "link-local or multicast address is refused unless SKIPLOCK_WEBHOOK_ALLOW_PRIVATE=true",
}
_WEBHOOK_FIELDS: dict[str, Schema] = {
    "id": UUID,
    "url": URL,
    "events": {"type": "array", "items": EVENT_TYPE},
    "createdAt": TIMESTAMP,
}

SCHEMAS.update(
    {
        "CreateWebhook": {
            "type": "object",
            "description": "A completion webhook: deliveries are POSTed to url, signed "
            "(Standard Webhooks).",
            "required": ["url"],
            "properties": {
                "url": URL,
                "events": {
                    "type": ["array", "null"],
                    "items": EVENT_TYPE,
                    "minItems": 1,
                    "maxItems": 2 * len(webhooks.EVENT_TYPES),
                    "description": "Default: " + ", ".join(webhooks.DEFAULT_EVENTS),
                },
            },
            "additionalProperties": False,
            "examples": [{"url": "https://example.com/hooks/skiplock"}],
        },
        "Webhook": _object(_WEBHOOK_FIELDS, "A webhook (its secret is shown only at creation)."),
        "WebhookCreated": _object(
            {
                **_WEBHOOK_FIELDS,
                "secret": {
                    "type": "string",
                    "pattern": "^whsec_[A-Za-z0-9+/]+={0,2}$",
                    "description": "whsec_ + base64 of 32 random bytes: the HMAC-SHA256 key "
                    "of webhook-signature. Shown only here.",
                },
            },
            "The new webhook, with its secret: keep it, it is never shown again.",
        ),
        "WebhookList": _object({"items": {"type": "array", "items": schema_ref("Webhook")}}),
        "Delivery": _object(
            {
                "id": {**UUID, "description": "The webhook-id header of every attempt"},
                "eventId": {"type": "integer", "description": "The event reported"},
                "jobId": UUID,
                "type": EVENT_TYPE,
                "status": {"type": "string", "enum": list(DELIVERY_STATUSES)},
                "attempts": {"type": "integer", "minimum": 0},
                "lastStatusCode": {"type": ["integer", "null"]},
                "lastError": {"type": ["string", "null"]},
                "nextAttemptAt": {
                    **nullable(TIMESTAMP),
                    "description": "While pending: when the next attempt is due",
                },
                "deliveredAt": nullable(TIMESTAMP),
                "createdAt": TIMESTAMP,
            },
            "One event sent to one webhook, with its attempts so far.",
        ),
        "DeliveryList": _object(
            {"items": {"type": "array", "items": schema_ref("Delivery")}}, "Newest first."
        ),
        "Schedule": _object(
            {
                "id": UUID,
                "jobType": {"type": "string"},
                "input": {"type": "object"},
                "cron": {"type": ["string", "null"]},
                "intervalSeconds": {
                    "type": ["integer", "null"],
                    "minimum": 1,
                    "maximum": MAX_INTERVAL_SECONDS,
                },
                "timezone": {"type": "string"},
                "sourceTaskId": {"type": ["string", "null"]},
                "priority": {"type": "integer", "minimum": -1000, "maximum": 1000},
                "nextRunAt": TIMESTAMP,
                "createdAt": TIMESTAMP,
            },
            "A schedule: each tick enqueues one job with these values.",
        ),
        "ScheduleList": _object({"items": {"type": "array", "items": schema_ref("Schedule")}}),
    }
)
PARAMETERS.update(
    {
        "webhookId": _param(
            "path", "webhookId", UUID, "The webhook; not a UUID or not this company's: 404"
        ),
        "scheduleId": _param(
            "path", "scheduleId", UUID, "The schedule; not a UUID or not this company's: 404"
        ),
        "deliveryStatus": _filter(
            "status",
            {"type": "string", "enum": list(DELIVERY_STATUSES)},
            "Only deliveries in this status",
        ),
    }
)
DELETED = {"204": {"description": "Deleted"}}
OPERATIONS.update(
    {
        ("POST", f"{COMPANY}/webhooks"): Operation(
            "createWebhook",
            "Create a completion webhook; the answer holds its secret, shown only once",
            "webhooks",
            {"201": _json("The webhook and its secret", "WebhookCreated")},
            (400, 401, 403, 404, 409, 413, 415, 422, 503),
            ("companyId",),
            body="CreateWebhook",
        ),
        ("GET", f"{COMPANY}/webhooks"): Operation(
            "listWebhooks",
            "The company's webhooks",
            "webhooks",
            {"200": _json("The webhooks", "WebhookList")},
            READ_ERRORS,
            ("companyId",),
        ),
        ("GET", f"{WEBHOOK}/deliveries"): Operation(
            "listWebhookDeliveries",
            "A webhook's newest deliveries: attempts, status codes, next attempt",
            "webhooks",
            {"200": _json("The deliveries, newest first", "DeliveryList")},
            (401, 403, 404, 422, 503),
            ("companyId", "webhookId", "limit", "deliveryStatus"),
        ),
        ("DELETE", WEBHOOK): Operation(
            "deleteWebhook",
            "Delete a webhook; its pending deliveries are dropped",
            "webhooks",
            DELETED,
            READ_ERRORS,
            ("companyId", "webhookId"),
        ),
        ("POST", f"{COMPANY}/schedules"): Operation(
            "createSchedule",
            "Create a schedule: a job every cron tick (in timezone) or every intervalSeconds",
            "schedules",
            {"201": _json("The schedule, with its first run", "Schedule")},
            (400, 401, 403, 404, 409, 413, 415, 422, 503),
            ("companyId",),
            body="CreateSchedule",
        ),
        ("GET", f"{COMPANY}/schedules"): Operation(
            "listSchedules",
            "The company's schedules, with their next runs",
            "schedules",
            {"200": _json("The schedules", "ScheduleList")},
            READ_ERRORS,
            ("companyId",),
        ),
        ("DELETE", SCHEDULE): Operation(
            "deleteSchedule",
            "Delete a schedule; it makes no more jobs",
            "schedules",
            DELETED,
            READ_ERRORS,
            ("companyId", "scheduleId"),
        ),
    }
)


def _schedule_schemas(registry: Registry) -> dict[str, Schema]:
    """CreateSchedule: one variant per job type (chosen by jobType), its input checked by the
    type's schema as a submit's is; exactly one of cron and intervalSeconds."""
    low, high, default = RANGES["priority"]
    timing: Schema = {
        "cron": {
            "type": "string",
            "maxLength": MAX_CRON_LENGTH,
            "description": "5 cron fields (minute hour day-of-month month day-of-week)",
            "examples": ["*/15 * * * *", "0 9 * * 1-5"],
        },
        "intervalSeconds": {"type": "integer", "minimum": 1, "maximum": MAX_INTERVAL_SECONDS},
        "timezone": {
            "type": "string",
            "maxLength": MAX_TIMEZONE_LENGTH,
            "description": "IANA time zone the cron fields are read in (default UTC)",
            "examples": ["UTC", "Europe/Berlin"],
        },
        "sourceTaskId": {"type": ["string", "null"], "maxLength": 1000},
        "priority": {"type": ["integer", "null"], "minimum": low, "maximum": high},
    }
    timing["priority"]["default"] = default
    schemas: dict[str, Schema] = {}
    mapping: dict[str, str] = {}
    for name in registry.names():
        _, submit = _submit_variant(name, registry.get(name).schema)
        variant = {
            **submit,
            "properties": {
                "jobType": submit["properties"]["jobType"],
                "input": submit["properties"]["input"],
                **timing,
            },
            "oneOf": [{"required": ["cron"]}, {"required": ["intervalSeconds"]}],
        }
        schemas[f"CreateSchedule.{name}"] = variant
        mapping[name] = f"#/components/schemas/CreateSchedule.{name}"
    example = next((n for n in registry.names() if _takes_empty_input(registry, n)), None)
    schemas["CreateSchedule"] = {
        "description": "A periodic job: exactly one of cron and intervalSeconds; jobType and "
        "input are checked as a submit's are.",
        "type": "object",
        "required": ["jobType"],
        "properties": {"jobType": {"type": "string", "enum": list(mapping)}},
        "oneOf": [{"$ref": target} for target in mapping.values()],
        "discriminator": {"propertyName": "jobType", "mapping": mapping},
        **({"examples": [{"jobType": example, "intervalSeconds": 3600}]} if example else {}),
    }
    return schemas


def _takes_empty_input(registry: Registry, name: str) -> bool:
    schema = registry.get(name).schema
    return schema is None or Draft202012Validator(schema).is_valid({})


# ------------------------------------------------------------------------------------------
# The document
# ------------------------------------------------------------------------------------------


def build_document(app: Starlette) -> Schema:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "skiplock",
            "version": skiplock.__version__,
            "description": "A Postgres-native job queue: submit jobs, follow them live (SSE), "
            'fetch what they made. Errors are {"error": {"code", "message"}}.',
        },
        "security": KEY,
        "paths": _paths(app.routes),
        "components": {
            "schemas": {
                **SCHEMAS,
                **_submit_schemas(app.state.registry),
                **_schedule_schemas(app.state.registry),
            },
            "parameters": PARAMETERS,
            "responses": {name: _error_response(s, d) for s, (name, d) in ERRORS.items()},
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Authorization: Bearer <apiKey>",
                },
                "streamToken": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "token",
                    "description": "?token= from POST /companies/{companyId}/stream-tokens",
                },
            },
        },
    }


def document(app: Starlette) -> Schema:
    """The app's document, built on first use and cached on app.state."""
    cached: Schema | None = getattr(app.state, "openapi", None)
    if cached is None:
        cached = build_document(app)
        app.state.openapi = cached
    return cached


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(document(request.app))
