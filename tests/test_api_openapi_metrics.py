"""/openapi.json and /metrics over real HTTP against a real Postgres (SPEC §4)."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from api_harness import Api, running_api
from skiplock.api.app import routes
from skiplock.builtin import diagram

UUID_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
CONTENT = "/companies/{companyId}/assets/{assetId}/content"
FAMILIES = {
    "skiplock_http_requests": "counter",
    "skiplock_http_request_duration_seconds": "histogram",
    "skiplock_sse_clients": "gauge",
    "skiplock_event_delivery_lag_seconds": "gauge",
    "skiplock_events_delivered": "counter",
    "skiplock_jobs": "gauge",
    "skiplock_queue_depth": "gauge",
    "skiplock_event_horizon_age_seconds": "gauge",
    "skiplock_notification_queue_usage": "gauge",
}
DATABASE_FAMILIES = {
    "skiplock_jobs",
    "skiplock_queue_depth",
    "skiplock_event_horizon_age_seconds",
    "skiplock_notification_queue_usage",
}


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(database_url, tmp_path / "storage") as running:
        yield running


async def openapi(api: Api) -> dict[str, Any]:
    response = await api.client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


async def scrape(api: Api) -> tuple[str, dict[str, Any]]:
    response = await api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    return response.text, families


def samples(families: dict[str, Any], name: str, suffix: str = "") -> list[Sample]:
    return [s for s in families[name].samples if s.name == name + suffix]


def value(families: dict[str, Any], name: str, suffix: str = "", **labels: str) -> float:
    matching = [
        s.value
        for s in samples(families, name, suffix)
        if all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return sum(matching)


# ------------------------------------------------------------------------------------------
# /openapi.json
# ------------------------------------------------------------------------------------------


async def test_openapi_document_is_valid_openapi_3_1(api: Api) -> None:
    document = await openapi(api)
    assert document["openapi"].startswith("3.1")
    OpenAPIV31SpecValidator(document).validate()


async def test_openapi_lists_every_route_and_method(api: Api) -> None:
    document = await openapi(api)
    documented = {
        (path, method.upper()) for path, item in document["paths"].items() for method in item
    }
    # Starlette adds HEAD to every GET route; it is part of the contract only for asset
    # content (size and ETag without the bytes), so only there is it documented.
    served = {(r.path, m) for r in routes() for m in r.methods or () if m != "HEAD"}
    assert documented == served | {(CONTENT, "HEAD")}
    operation_ids = [
        op["operationId"] for item in document["paths"].values() for op in item.values()
    ]
    assert len(operation_ids) == len(set(operation_ids))


async def test_openapi_describes_parameters_security_and_errors(api: Api) -> None:
    document = await openapi(api)
    components = document["components"]
    parameters = components["parameters"]
    for name in ("companyId", "jobId", "assetId"):
        assert parameters[name]["in"] == "path" and parameters[name]["required"] is True
        assert parameters[name]["schema"] == {"type": "string", "format": "uuid"}
    list_jobs = document["paths"]["/companies/{companyId}/content-jobs"]["get"]
    names = {p["$ref"].rsplit("/", 1)[-1] for p in list_jobs["parameters"]}
    assert names == {"companyId", "status", "jobType", "sourceTaskId", "limit", "cursor"}
    assert parameters["status"]["schema"]["enum"] == [
        "queued", "running", "done", "failed", "canceled",
    ]  # fmt: skip
    assert (parameters["limit"]["schema"]["minimum"], parameters["limit"]["schema"]["maximum"]) == (
        1,
        200,
    )
    assert {(p["in"], p["name"]) for p in parameters.values() if p["in"] == "header"} == {
        ("header", "Idempotency-Key"),
        ("header", "Last-Event-ID"),
        ("header", "Range"),
        ("header", "If-Range"),
        ("header", "If-None-Match"),
    }
    assert components["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "Authorization: Bearer <apiKey>",
    }
    assert components["securitySchemes"]["streamToken"]["in"] == "query"
    events = document["paths"]["/companies/{companyId}/events"]["get"]
    assert "text/event-stream" in events["responses"]["200"]["content"]
    assert {"bearer": []} in events["security"] and {"streamToken": []} in events["security"]
    assert document["paths"]["/metrics"]["get"]["security"] == []
    submit = document["paths"]["/companies/{companyId}/content-jobs"]["post"]
    assert set(submit["responses"]) == {
        "202", "400", "401", "403", "404", "409", "413", "415", "422", "429", "503",
    }  # fmt: skip
    content = document["paths"][CONTENT]["get"]["responses"]
    assert {"200", "206", "304", "416"} <= set(content)
    for name in ("Job", "JobList", "SubmitAccepted", "Stats", "StreamToken", "Asset", "Error"):
        assert name in components["schemas"]


async def test_openapi_has_each_job_types_input_schema(api: Api) -> None:
    document = await openapi(api)
    schemas = document["components"]["schemas"]
    assert schemas["Input.diagram"] == diagram.SCHEMA
    assert schemas["Input.noop"] == {"type": "object"}
    submit = schemas["SubmitJob"]
    names = sorted(submit["discriminator"]["mapping"])
    assert "diagram" in names and "noop" in names
    assert submit["properties"]["jobType"]["enum"] == names
    variant = schemas["SubmitJob.diagram"]
    assert variant["properties"]["jobType"]["const"] == "diagram"
    assert variant["properties"]["input"] == {"$ref": "#/components/schemas/Input.diagram"}
    assert "input" in variant["required"]  # {} fails the diagram schema: input is required
    assert "input" not in schemas["SubmitJob.noop"]["required"]


async def test_openapi_is_built_once_per_app(api: Api) -> None:
    first = await openapi(api)
    assert await openapi(api) == first
    app = api.server.config.app
    assert app.state.openapi is not None


# ------------------------------------------------------------------------------------------
# /metrics
# ------------------------------------------------------------------------------------------


async def test_metrics_exports_every_family_without_a_key(api: Api) -> None:
    _, families = await scrape(api)
    for name, kind in FAMILIES.items():
        assert name in families, name
        assert families[name].type == kind, name
    assert value(families, "skiplock_notification_queue_usage") >= 0
    assert value(families, "skiplock_jobs", status="queued") == 0


async def test_metrics_count_requests_by_route_template_never_an_id(api: Api) -> None:
    job_id = await api.submit("noop", sourceTaskId="secret-task")
    job = f"{api.acme.prefix}/content-jobs/{job_id}"
    assert (await api.client.get(job, headers=api.acme.headers)).status_code == 200
    assert (await api.client.get(job, headers=api.other.headers)).status_code == 403
    await api.client.get(f"/nope/{uuid.uuid4()}")
    text, families = await scrape(api)
    template = "/companies/{companyId}/content-jobs/{jobId}"
    requests = "skiplock_http_requests"
    assert value(families, requests, "_total", route=template, method="GET", status="200") == 1
    assert value(families, requests, "_total", route=template, method="GET", status="403") == 1
    submit = "/companies/{companyId}/content-jobs"
    assert value(families, requests, "_total", route=submit, method="POST", status="202") == 1
    assert value(families, requests, "_total", route="<unmatched>", status="404") == 1
    duration = "skiplock_http_request_duration_seconds"
    assert value(families, duration, "_count", route=template, method="GET") == 2
    for family in families.values():
        for sample in family.samples:
            for label in sample.labels.values():
                assert not UUID_PATTERN.search(label), (sample.name, label)
    for secret in (str(api.acme.company_id), str(api.other.company_id), job_id, "secret-task"):
        assert secret not in text
    assert value(families, "skiplock_jobs", status="queued") == 1
    assert value(families, "skiplock_queue_depth") == 1


async def test_an_sse_stream_counts_when_it_starts(api: Api) -> None:
    path = f"{api.acme.prefix}/events"
    async with api.client.stream("GET", path, headers=api.acme.headers) as stream:
        assert stream.status_code == 200  # headers only: the stream is still open
        _, families = await scrape(api)
        route = "/companies/{companyId}/events"
        assert value(families, "skiplock_http_requests", "_total", route=route, status="200") == 1
        assert value(families, "skiplock_sse_clients") == 1
        await api.submit("noop")
        lines = stream.aiter_lines()
        while not (await asyncio.wait_for(anext(lines), 10)).startswith("event: content_job"):
            pass
    _, families = await scrape(api)
    assert value(families, "skiplock_events_delivered", "_total") >= 1
    assert value(families, "skiplock_event_delivery_lag_seconds") >= 0


async def test_horizon_age_tracks_an_open_write_transaction(api: Api) -> None:
    with psycopg.connect(api.database_url) as holder:
        holder.execute("SELECT pg_current_xact_id()")  # takes a transaction id: holds the horizon
        held_since = time.monotonic()
        while True:
            _, families = await scrape(api)
            age = value(families, "skiplock_event_horizon_age_seconds")
            if age > 0:
                break
            assert time.monotonic() - held_since < 10, "the horizon's age never rose"
            await asyncio.sleep(0.05)
        holder.rollback()


async def test_metrics_answer_without_the_database(api: Api, caplog: Any) -> None:
    from skiplock.api.metrics import SnapshotCache

    app = api.server.config.app
    # The gauges' own connection goes to a port where nothing listens.
    app.state.snapshots = SnapshotCache("postgresql://nobody@127.0.0.1:1/none")
    _, families = await scrape(api)
    assert DATABASE_FAMILIES.isdisjoint(families)
    assert {"skiplock_http_requests", "skiplock_sse_clients"} <= set(families)
    assert "database gauges left out" in caplog.text
