"""The job routes over real HTTP against a real Postgres (SPEC §4)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from api_harness import Api, running_api


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(database_url, tmp_path / "storage") as running:
        yield running


async def test_submit_answers_202_with_location_and_the_job_reads_back(api: Api) -> None:
    response = await api.client.post(
        f"{api.acme.prefix}/content-jobs",
        json={"jobType": "echo", "input": {"text": "hi"}, "sourceTaskId": "t-1", "priority": 5},
        headers=api.acme.headers,
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued" and body["createdAt"].endswith("Z")
    assert uuid.UUID(body["jobId"]).version == 7  # time-ordered (sql/0010)
    assert response.headers["location"] == f"{api.acme.prefix}/content-jobs/{body['jobId']}"
    job = (await api.client.get(response.headers["location"], headers=api.acme.headers)).json()
    assert job["id"] == body["jobId"] and job["companyId"] == str(api.acme.company_id)
    assert (job["jobType"], job["input"], job["sourceTaskId"], job["priority"]) == (
        "echo",
        {"text": "hi"},
        "t-1",
        5,
    )
    assert job["attempts"] == 0 and job["maxAttempts"] == 3 and job["progress"] is None
    assert set(job) == {
        "id", "companyId", "jobType", "status", "input", "resultAssetId", "errorMessage",
        "sourceTaskId", "priority", "runAt", "attempts", "maxAttempts", "progress",
        "startedAt", "finishedAt", "createdAt", "updatedAt",
    }  # fmt: skip


async def test_whoami_names_the_keys_company(api: Api) -> None:
    answer = await api.client.get("/whoami", headers=api.acme.headers)
    assert answer.status_code == 200
    assert answer.json() == {"companyId": str(api.acme.company_id), "keyId": str(api.acme.key_id)}
    theirs = await api.client.get("/whoami", headers=api.other.headers)
    assert theirs.json()["companyId"] == str(api.other.company_id)
    assert (await api.client.get("/whoami")).status_code == 401
    bad = await api.client.get("/whoami", headers={"Authorization": "Bearer sk_nope"})
    assert bad.status_code == 401


async def test_auth_order_401_404_403(api: Api) -> None:
    path = f"{api.acme.prefix}/content-jobs"
    assert (await api.client.get(path)).status_code == 401
    bad = {"Authorization": "Bearer sk_nope"}
    assert (await api.client.get(path, headers=bad)).status_code == 401
    assert (await api.client.get("/companies/not-a-uuid/content-jobs")).status_code == 401
    not_uuid = await api.client.get("/companies/not-a-uuid/content-jobs", headers=api.acme.headers)
    assert not_uuid.status_code == 404
    other = await api.client.get(path, headers=api.other.headers)
    assert other.status_code == 403
    assert other.json()["error"]["code"] == "forbidden"
    job_id = await api.submit()
    mine = f"{api.acme.prefix}/content-jobs/{job_id}"
    assert (await api.client.get(mine, headers=api.other.headers)).status_code == 403
    theirs = f"{api.other.prefix}/content-jobs/{job_id}"
    assert (await api.client.get(theirs, headers=api.other.headers)).status_code == 404


async def test_body_errors_415_413_400_422(api: Api) -> None:
    path = f"{api.acme.prefix}/content-jobs"
    h = api.acme.headers

    async def post(content: bytes, content_type: str = "application/json") -> tuple[int, str]:
        r = await api.client.post(
            path, content=content, headers={**h, "Content-Type": content_type}
        )
        return r.status_code, r.json()["error"]["code"] if r.status_code >= 400 else ""

    assert (await post(b'{"jobType": "noop"}', "text/plain"))[0] == 415
    assert (await post(b"{" + b" " * (1 << 20) + b"}"))[0] == 413
    assert (await post(b'{"jobType": '))[0] == 400
    assert (await post(b'{"jobType": "noop", "input": {"x": NaN}}'))[0] == 400
    assert (await post(b'{"jobType": "nope"}')) == (422, "invalid")
    assert (await post(b'{"jobType": "noop", "input": []}'))[0] == 422
    assert (await post(b'{"jobType": "noop", "priority": 5000}'))[0] == 422
    assert (await post(b'{"jobType": "noop", "maxAttempts": 0}'))[0] == 422
    assert (await post(b'{"jobType": "noop", "timeoutSeconds": true}'))[0] == 422
    assert (await post(b'{"jobType": "noop", "runAt": "tomorrow"}'))[0] == 422
    assert (await post(b'{"jobType": "noop", "runAt": "2026-01-01T00:00:00"}'))[0] == 422
    assert (await post(b'{"jobType": "diagram", "input": {"source": 1}}'))[0] == 422
    assert (await post(b'{"jobType": "noop", "input": {"a": "\\u0000"}}'))[0] == 422
    assert (await post(b'{"jobType": "noop", "input": {"a": "\\ud800"}}'))[0] == 422
    deep = b'{"jobType": "noop", "input": {"a": ' + b"[" * 100 + b"]" * 100 + b"}}"
    assert (await post(deep))[0] in (400, 422)
    very_deep = b'{"jobType": "noop", "input": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    assert (await post(very_deep))[0] in (400, 422)
    assert api.sql("SELECT count(*) FROM skiplock.content_jobs") == [(0,)]  # nothing half-written


async def test_body_checks_at_their_edges(api: Api) -> None:
    """The storable checks agree whether the JSON text lets them skip the walk or not."""
    path = f"{api.acme.prefix}/content-jobs"
    headers = {**api.acme.headers, "Content-Type": "application/json"}

    async def post(content: bytes) -> int:
        return (await api.client.post(path, content=content, headers=headers)).status_code

    def nested(lists: int) -> bytes:  # the body and input objects are 2 levels already
        return b'{"jobType": "noop", "input": {"a": ' + b"[" * lists + b"]" * lists + b"}}"

    assert await post(nested(62)) == 202  # 64 deep: the limit
    assert await post(nested(63)) == 422  # 65 deep
    brackets_in_a_string = b'{"jobType": "noop", "input": {"a": "' + b"[{" * 100 + b'"}}'
    assert await post(brackets_in_a_string) == 202
    assert await post(b'{"jobType": "noop", "input": {"\\u0000": 1}}') == 422
    assert await post(b'{"jobType": "noop", "input": {"a": "\\\\u0000"}}') == 202  # \ + u0000
    assert await post(b'{"jobType": "noop", "input": {"a": "\\u00e9"}}') == 202
    assert await post('\ufeff{"jobType": "noop"}'.encode()) == 400  # a UTF-8 BOM


async def test_idempotency_same_body_same_job_other_body_409(api: Api) -> None:
    path = f"{api.acme.prefix}/content-jobs"
    headers = {**api.acme.headers, "Idempotency-Key": "k-1"}
    body = {"jobType": "echo", "input": {"text": "a"}}
    first, second = await asyncio.gather(
        api.client.post(path, json=body, headers=headers),
        api.client.post(path, json=body, headers=headers),
    )
    assert first.status_code == second.status_code == 202
    assert first.json()["jobId"] == second.json()["jobId"]
    explicit_defaults = {**body, "priority": 0, "maxAttempts": 3, "sourceTaskId": None}
    third = await api.client.post(path, json=explicit_defaults, headers=headers)
    assert third.json()["jobId"] == first.json()["jobId"]
    conflict = await api.client.post(path, json={**body, "priority": 1}, headers=headers)
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "conflict"
    # Another company may use the same key.
    theirs = await api.client.post(
        f"{api.other.prefix}/content-jobs",
        json=body,
        headers={**api.other.headers, "Idempotency-Key": "k-1"},
    )
    assert theirs.status_code == 202 and theirs.json()["jobId"] != first.json()["jobId"]


async def test_concurrent_submits_share_statements_and_each_gets_its_own_job(api: Api) -> None:
    writer = api.app_state().submits
    before = writer.statements
    path = f"{api.acme.prefix}/content-jobs"
    answers = await asyncio.gather(
        *(
            api.client.post(
                path,
                json={"jobType": "echo", "input": {"text": str(i)}, "sourceTaskId": f"t{i}"},
                headers=api.acme.headers,
            )
            for i in range(40)
        )
    )
    assert all(a.status_code == 202 for a in answers)
    job_ids = [a.json()["jobId"] for a in answers]
    assert len(set(job_ids)) == 40
    rows = dict(
        api.sql(
            "SELECT id::text, input->>'text' || '/' || source_task_id FROM skiplock.content_jobs "
            "WHERE id = ANY(%s::uuid[])",
            (job_ids,),
        )
    )
    assert [rows[j] for j in job_ids] == [f"{i}/t{i}" for i in range(40)]  # each its own
    assert writer.statements - before < 40  # submits that arrived together went in together


def submit_params(company_id: uuid.UUID, key: str | None = None) -> dict[str, Any]:
    """One submit as the API hands it to its batching writer (api/submits.py)."""
    return {
        "id": uuid.uuid4(),
        "company_id": company_id,
        "job_type": "noop",
        "input": Jsonb({}),
        "source_task_id": None,
        "priority": 0,
        "run_at": None,
        "max_attempts": 3,
        "timeout_seconds": None,
        "idempotency_key": key,
        "request_sha256": None,
    }


async def test_a_batch_with_a_bad_row_fails_only_that_row(api: Api) -> None:
    writer = api.app_state().submits

    # Two submits with one idempotency key in the same statement: the first gets the row.
    # (The first of each gather is written alone, at once; the others wait and go together.)
    first, second = (
        submit_params(api.acme.company_id, "k-batch"),
        submit_params(api.acme.company_id, "k-batch"),
    )
    before = writer.statements
    same_key = await asyncio.gather(
        writer.insert(submit_params(api.acme.company_id)),
        writer.insert(first),
        writer.insert(second),
    )
    assert writer.statements - before == 2
    assert same_key[1] is not None and same_key[1]["id"] == first["id"]
    assert same_key[2] is None  # the key was taken: its caller reads the job that holds it

    good, vanished, also_good = (
        submit_params(api.acme.company_id),
        submit_params(uuid.uuid4()),  # no such company: the foreign key refuses this row
        submit_params(api.acme.company_id),
    )
    before = writer.statements
    results = await asyncio.gather(
        *(
            writer.insert(p)
            for p in (submit_params(api.acme.company_id), good, vanished, also_good)
        ),
        return_exceptions=True,
    )
    # 1 alone; 3 refused together; then the company's 2 together and the vanished one alone.
    assert writer.statements - before == 4
    assert isinstance(results[2], psycopg.errors.ForeignKeyViolation)
    assert [r["id"] for r in (results[1], results[3])] == [good["id"], also_good["id"]]
    stored = api.sql(
        "SELECT count(*) FROM skiplock.content_jobs WHERE id = ANY(%s)",
        ([good["id"], also_good["id"]],),
    )
    assert stored == [(2,)]


async def test_a_company_over_its_quota_does_not_make_a_batch_go_row_by_row(api: Api) -> None:
    writer = api.app_state().submits
    api.sql("UPDATE skiplock.companies SET max_queued = 0 WHERE id = %s", (api.other.company_id,))

    before = writer.statements
    rows = [submit_params(api.acme.company_id) for _ in range(11)]
    rows.insert(6, submit_params(api.other.company_id))
    results = await asyncio.gather(*(writer.insert(p) for p in rows), return_exceptions=True)
    refused = results.pop(6)
    assert isinstance(refused, psycopg.errors.CheckViolation)
    assert [r["id"] for r in results] == [p["id"] for p in rows if p is not rows[6]]
    # 1 alone; 11 refused together; then acme's 10 together and the other company's 1,
    # rather than 11 statements of one row each.
    assert writer.statements - before == 4


async def test_list_is_newest_first_with_keyset_cursor_and_filters(api: Api) -> None:
    ids = [await api.submit("noop", sourceTaskId=f"s{i % 2}") for i in range(7)]
    await api.submit("noop", tenant=api.other)
    path = f"{api.acme.prefix}/content-jobs"
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = (await api.client.get(path, params=params, headers=api.acme.headers)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    filtered = await api.client.get(path, params={"sourceTaskId": "s1"}, headers=api.acme.headers)
    assert [i["id"] for i in filtered.json()["items"]] == [ids[5], ids[3], ids[1]]
    for bad in ({"limit": "201"}, {"limit": "0"}, {"status": "nope"}, {"cursor": "garbage!"}):
        assert (await api.client.get(path, params=bad, headers=api.acme.headers)).status_code == 422
    default = (await api.client.get(path, headers=api.acme.headers)).json()
    assert len(default["items"]) == 7 and default["nextCursor"] is None


async def test_cancel_and_retry_rules(api: Api) -> None:
    job_id = await api.submit("noop")
    base = f"{api.acme.prefix}/content-jobs/{job_id}"
    h = api.acme.headers
    assert (await api.client.post(f"{base}/retry", headers=h)).status_code == 409
    canceled = await api.client.post(f"{base}/cancel", headers=h)
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    again = await api.client.post(f"{base}/cancel", headers=h)
    assert again.status_code == 200 and again.json()["updatedAt"] == canceled.json()["updatedAt"]
    retried = await api.client.post(f"{base}/retry", headers=h)
    assert retried.status_code == 200
    job = retried.json()
    assert (job["status"], job["attempts"], job["finishedAt"], job["errorMessage"]) == (
        "queued",
        0,
        None,
        None,
    )
    events = api.sql(
        "SELECT payload FROM skiplock.content_job_events "
        "WHERE job_id = %s AND type = 'content_job.queued' ORDER BY xid, id",
        (uuid.UUID(job_id),),
    )
    assert events[-1][0]["reason"] == "retry" and events[-1][0]["attempt"] == 0
    api.sql("UPDATE skiplock.content_jobs SET status = 'done' WHERE id = %s", (uuid.UUID(job_id),))
    assert (await api.client.post(f"{base}/cancel", headers=h)).status_code == 409
    unknown = f"{api.acme.prefix}/content-jobs/{uuid.uuid4()}"
    assert (await api.client.post(f"{unknown}/cancel", headers=h)).status_code == 404
    assert (await api.client.post(f"{unknown}/retry", headers=h)).status_code == 404


async def test_stats_count_per_type_and_status(api: Api) -> None:
    await api.submit("noop")
    await api.submit("noop")
    await api.submit("echo", input={"text": "x"})
    stats = (await api.client.get(f"{api.acme.prefix}/stats", headers=api.acme.headers)).json()
    counts = {(i["jobType"], i["status"]): i["count"] for i in stats["items"]}
    assert counts == {("echo", "queued"): 1, ("noop", "queued"): 2}


async def test_stream_token_is_read_only_and_only_for_streams(api: Api) -> None:
    made = await api.client.post(f"{api.acme.prefix}/stream-tokens", headers=api.acme.headers)
    assert made.status_code == 201
    token = made.json()["token"]
    assert made.json()["expiresAt"].endswith("Z")
    path = f"{api.acme.prefix}/content-jobs"
    assert (await api.client.get(path, params={"token": token})).status_code == 401
    tokens = f"{api.acme.prefix}/stream-tokens"
    assert (await api.client.post(tokens, params={"token": token})).status_code == 401
    # A token cannot be presented as a key either.
    as_key = {"Authorization": f"Bearer {token}"}
    assert (await api.client.get(path, headers=as_key)).status_code == 401
    stored = api.sql("SELECT token_hash FROM skiplock.stream_tokens")
    assert len(stored) == 1 and token not in stored[0][0]


async def test_unknown_route_and_method_are_json_errors(api: Api) -> None:
    missing = await api.client.get("/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = await api.client.delete(f"{api.acme.prefix}/content-jobs", headers=api.acme.headers)
    assert wrong.status_code == 405 and "error" in wrong.json()


async def test_cors_only_for_configured_origins(database_url: str, tmp_path: Path) -> None:
    origins = ("https://app.example",)
    async with running_api(database_url, tmp_path / "s", cors_origins=origins) as api:
        path = f"{api.acme.prefix}/content-jobs"
        allowed = await api.client.get(
            path, headers={**api.acme.headers, "Origin": "https://app.example"}
        )
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = await api.client.get(
            path, headers={**api.acme.headers, "Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers
        preflight = await api.client.options(
            path,
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
            },
        )
        assert preflight.status_code == 200
    async with running_api(database_url, tmp_path / "s") as plain:
        response = await plain.client.get("/healthz", headers={"Origin": "https://app.example"})
        assert "access-control-allow-origin" not in response.headers


@pytest.mark.slow
async def test_a_revoked_key_and_its_tokens_stop_working_within_seconds(api: Api) -> None:
    from skiplock import db, keys

    path = f"{api.acme.prefix}/content-jobs"
    token = (
        await api.client.post(f"{api.acme.prefix}/stream-tokens", headers=api.acme.headers)
    ).json()["token"]
    events = f"{api.acme.prefix}/events"
    assert (await api.client.get(path, headers=api.acme.headers)).status_code == 200
    conn = await db.connect_async(api.database_url)
    async with conn:
        await keys.revoke_key(conn, api.acme.key_id)
    revoked = asyncio.get_running_loop().time()
    while (await api.client.get(path, headers=api.acme.headers)).status_code == 200:
        assert asyncio.get_running_loop().time() - revoked < 10  # cached 5 s (2x slack)
        await asyncio.sleep(0.2)
    async with api.client.stream("GET", events, params={"token": token}) as stream:
        assert stream.status_code == 401


async def test_no_route_lets_a_tenant_reach_another_tenants_things(api: Api) -> None:
    """Every company route, with the other company's key on our path (403), and with our key
    on our path naming their job or asset (404)."""
    their_job = await api.submit("echo", tenant=api.other, input={"text": "secret"})
    their_asset = uuid.uuid4()
    api.sql(
        "INSERT INTO skiplock.assets (id, company_id, object_key, content_type, byte_size, sha256) "
        "VALUES (%s, %s, 'k', 'text/plain', 1, %s)",
        (their_asset, api.other.company_id, "0" * 64),
    )
    mine = api.acme.prefix
    company_routes = [
        ("POST", f"{mine}/content-jobs"),
        ("GET", f"{mine}/content-jobs"),
        ("GET", f"{mine}/content-jobs/{their_job}"),
        ("POST", f"{mine}/content-jobs/{their_job}/cancel"),
        ("POST", f"{mine}/content-jobs/{their_job}/retry"),
        ("GET", f"{mine}/content-jobs/{their_job}/events"),
        ("GET", f"{mine}/events"),
        ("GET", f"{mine}/stats"),
        ("POST", f"{mine}/stream-tokens"),
        ("GET", f"{mine}/assets/{their_asset}"),
        ("GET", f"{mine}/assets/{their_asset}/content"),
    ]
    for method, path in company_routes:
        response = await api.client.request(method, path, headers=api.other.headers, json={})
        assert response.status_code == 403, (method, path, response.text)
    for method, path in company_routes:
        if their_job in path or str(their_asset) in path:
            response = await api.client.request(method, path, headers=api.acme.headers)
            assert response.status_code == 404, (method, path, response.text)
            assert "secret" not in response.text
    assert api.sql(
        "SELECT status FROM skiplock.content_jobs WHERE id = %s", (uuid.UUID(their_job),)
    ) == [("queued",)]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"x": 1e999}', "input.x"),
        ('{"x": [1, -1E400]}', "input.x[1]"),
        ('{"deep": {"y": 1' + "0" * 400 + ".5}}", "input.deep.y"),
    ],
)
async def test_a_number_postgres_cannot_store_is_422_naming_the_field_and_the_connection_lives(
    api: Api, text: str, where: str
) -> None:
    """1e999 is valid JSON; Python reads it as inf, which jsonb refuses. It must be a 422
    naming the field, never a 500, and the client's keep-alive connection must still work."""
    body = '{"jobType": "noop", "input": ' + text + "}"
    async with one_connection(api, headers=api.acme.headers) as client:
        bad = await client.post(
            f"{api.acme.prefix}/content-jobs",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        assert bad.status_code == 422, bad.text
        assert where in bad.json()["error"]["message"]
        good = await client.post(f"{api.acme.prefix}/content-jobs", json={"jobType": "noop"})
        assert good.status_code == 202
        assert local_port(good) == local_port(bad)  # the same keep-alive connection
    assert api.sql("SELECT count(*) FROM skiplock.content_jobs") == [(1,)]


async def test_huge_integers_are_stored_exactly_or_refused_never_500(api: Api) -> None:
    huge = 10**400
    body = '{"jobType": "noop", "input": {"n": ' + str(huge) + "}}"
    answer = await api.client.post(
        f"{api.acme.prefix}/content-jobs",
        content=body,
        headers={**api.acme.headers, "Content-Type": "application/json"},
    )
    assert answer.status_code == 202
    job = await api.client.get(
        f"{api.acme.prefix}/content-jobs/{answer.json()['jobId']}", headers=api.acme.headers
    )
    assert job.json()["input"]["n"] == huge
    for name in ("priority", "maxAttempts", "timeoutSeconds"):
        for value in (str(huge), "1e999", "-1e999", "2.5"):
            answer = await api.client.post(
                f"{api.acme.prefix}/content-jobs",
                content='{"jobType": "noop", "' + name + '": ' + value + "}",
                headers={**api.acme.headers, "Content-Type": "application/json"},
            )
            assert answer.status_code == 422, (name, value, answer.text)
            assert name in answer.json()["error"]["message"]
    for limit in ("9" * 5000, "1e999", "-1", "1.5"):
        listed = await api.client.get(
            f"{api.acme.prefix}/content-jobs", params={"limit": limit}, headers=api.acme.headers
        )
        assert listed.status_code == 422, (limit, listed.text)


async def test_an_unexpected_error_answers_500_json_and_keeps_the_connection(
    api: Api,
) -> None:
    """A bug must cost one request, not the client's connection: uvicorn closes a connection
    whose app raised after answering, so nothing may re-raise past the 500 answer."""

    async def broken(request: Any) -> Any:
        raise RuntimeError("a bug")

    api.server.config.app.router.add_route("/broken", broken)  # type: ignore[attr-defined]
    async with one_connection(api) as client:
        first = await client.get("/broken")
        assert first.status_code == 500
        assert first.json()["error"]["code"] == "internal_error"
        second = await client.get("/healthz")
        assert second.status_code == 200
        assert local_port(second) == local_port(first)  # the same keep-alive connection


def one_connection(api: Api, **options: Any) -> httpx.AsyncClient:
    """A client that holds at most one connection, so a second request reuses the first's."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return httpx.AsyncClient(base_url=api.base_url, timeout=10, limits=limits, **options)


def local_port(response: httpx.Response) -> int:
    stream = response.extensions["network_stream"]
    return int(stream.get_extra_info("client_addr")[1])
