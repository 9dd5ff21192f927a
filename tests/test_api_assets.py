"""The asset routes over real HTTP against a real Postgres and real files (SPEC §4)."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from api_harness import Api, Tenant, running_api
from skiplock.storage import LocalDiskStorage, bytes_chunks, object_key_for
from worker_harness import await_for, running_worker

SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script>'
    b'<rect width="10" height="10"/></svg>'
)
SUPERSCRIPT_TWO = b"bytes=0-\xb2"  # a digit to str.isdigit(), not to HTTP
STATUS = "SELECT status FROM skiplock.content_jobs WHERE id = %s"


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(database_url, tmp_path / "storage") as running:
        yield running


@dataclass
class Asset:
    id: str
    data: bytes
    object_key: str
    tenant: Tenant

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def etag(self) -> str:
        return f'"{self.sha256}"'

    @property
    def path(self) -> str:
        return f"{self.tenant.prefix}/assets/{self.id}"

    @property
    def content(self) -> str:
        return f"{self.path}/content"


async def make_asset(
    api: Api,
    data: bytes,
    *,
    tenant: Tenant | None = None,
    content_type: str = "text/plain",
    filename: str | None = "notes.txt",
    source_task_id: str | None = None,
) -> Asset:
    """Real bytes in the API's storage and the assets row naming them, as a worker leaves."""
    tenant = tenant or api.acme
    key = object_key_for(tenant.company_id, filename or "output", now=datetime.now(UTC))
    stored = await LocalDiskStorage(api.storage_dir).put(
        key, bytes_chunks(data, 64 * 1024), max_bytes=1 << 30
    )
    [(asset_id,)] = api.sql(
        "INSERT INTO skiplock.assets (company_id, provider, object_key, content_type, "
        "byte_size, sha256, original_filename, source_task_id) "
        "VALUES (%s, 'local', %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            tenant.company_id,
            key,
            content_type,
            stored.byte_size,
            stored.sha256,
            filename,
            source_task_id,
        ),
    )
    return Asset(str(asset_id), data, key, tenant)


async def get(api: Api, url: str, **headers: str) -> httpx.Response:
    return await api.client.get(url, headers={**api.acme.headers, **headers})


async def ranged(api: Api, asset: Asset, spec: str | bytes, **headers: str) -> httpx.Response:
    """GET the content with this Range; bytes go out as they are (httpx sends str as ASCII)."""
    raw = {k.encode(): v.encode() for k, v in {**api.acme.headers, **headers}.items()}
    raw[b"Range"] = spec if isinstance(spec, bytes) else spec.encode()
    return await api.client.get(asset.content, headers=raw)


async def test_a_finished_jobs_asset_reads_back_as_metadata_and_bytes(
    api: Api, database_url: str
) -> None:
    job_id = await api.submit("echo", input={"text": "hello"}, sourceTaskId="task-9")
    job_path = f"{api.acme.prefix}/content-jobs/{job_id}"
    done = [("done",)]
    async with running_worker(database_url, api.storage_dir):
        await await_for(lambda: api.sql(STATUS, (job_id,)) == done)
    job = (await get(api, job_path)).json()
    response = await get(api, f"{api.acme.prefix}/assets/{job['resultAssetId']}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "id", "contentType", "byteSize", "sha256", "originalFilename", "sourceTaskId", "createdAt",
    }  # fmt: skip
    assert body["id"] == job["resultAssetId"]
    assert (body["contentType"], body["byteSize"], body["originalFilename"]) == (
        "text/plain",
        5,
        "echo.txt",
    )
    assert body["sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert body["sourceTaskId"] == "task-9"
    assert body["createdAt"].endswith("Z")
    datetime.fromisoformat(body["createdAt"])
    content = await get(api, f"{api.acme.prefix}/assets/{body['id']}/content")
    assert content.status_code == 200 and content.content == b"hello"
    assert content.headers["etag"] == f'"{body["sha256"]}"'


async def test_metadata_of_an_asset_made_without_a_job(api: Api) -> None:
    asset = await make_asset(api, b"abc", content_type="text/csv", filename=None)
    body = (await get(api, asset.path)).json()
    assert body["id"] == asset.id and body["sha256"] == asset.sha256
    assert body["originalFilename"] is None and body["sourceTaskId"] is None
    assert (body["contentType"], body["byteSize"]) == ("text/csv", 3)


async def test_content_streams_every_byte_with_the_spec_headers(api: Api) -> None:
    data = os.urandom(3 * (1 << 20) + 123)  # several storage chunks
    asset = await make_asset(api, data, content_type="application/octet-stream", filename="a.bin")
    response = await get(api, asset.content)
    assert response.status_code == 200
    assert response.content == data
    assert hashlib.sha256(response.content).hexdigest() == asset.sha256
    headers = response.headers
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-length"] == str(len(data))
    assert headers["content-disposition"] == (
        "attachment; filename=\"a.bin\"; filename*=UTF-8''a.bin"
    )
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-security-policy"] == "sandbox"
    assert headers["etag"] == asset.etag
    assert headers["accept-ranges"] == "bytes"
    assert headers["cache-control"].startswith("private, max-age=")
    assert "content-range" not in headers


async def test_svg_with_a_non_ascii_name_is_a_sandboxed_attachment(api: Api) -> None:
    asset = await make_asset(api, SVG, content_type="image/svg+xml", filename="résumé plan.svg")
    response = await get(api, asset.content)
    assert response.status_code == 200 and response.content == SVG
    assert response.headers["content-type"] == "image/svg+xml"  # no charset added
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9%20plan.svg" in disposition
    assert disposition.isascii() and 'filename="r_sum__plan.svg"' in disposition
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == "sandbox"


async def test_quotes_and_separators_in_a_filename_stay_inside_the_header(api: Api) -> None:
    asset = await make_asset(api, b"x", filename='a"b; c\\d/e.txt')
    disposition = (await get(api, asset.content)).headers["content-disposition"]
    assert disposition == (
        "attachment; filename=\"a_b__c_d_e.txt\"; filename*=UTF-8''a%22b%3B%20c%5Cd%2Fe.txt"
    )


async def test_an_unsafe_stored_content_type_is_served_as_octet_stream(api: Api) -> None:
    asset = await make_asset(api, b"x", content_type="text/html\r\nSet-Cookie: a=b")
    response = await get(api, asset.content)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert "set-cookie" not in response.headers


async def test_if_none_match_answers_304_without_a_body(api: Api) -> None:
    asset = await make_asset(api, b"cached bytes")
    for tag in (asset.etag, f"W/{asset.etag}", f'"nope", {asset.etag}', "*"):
        response = await get(api, asset.content, **{"If-None-Match": tag})
        assert response.status_code == 304, tag
        assert response.content == b""
        assert response.headers["etag"] == asset.etag
    head = await api.client.head(
        asset.content, headers={**api.acme.headers, "If-None-Match": asset.etag}
    )
    assert head.status_code == 304


async def test_if_none_match_of_another_tag_answers_200(api: Api) -> None:
    asset = await make_asset(api, b"fresh bytes")
    for tag in ('"0000"', asset.sha256, '"nope", W/"other"'):  # a bare sha256 is no entity tag
        response = await get(api, asset.content, **{"If-None-Match": tag})
        assert response.status_code == 200, tag
        assert response.content == b"fresh bytes"


async def test_single_ranges_answer_206_with_content_range(api: Api) -> None:
    data = bytes(range(256)) * 40  # 10240 bytes
    asset = await make_asset(api, data)
    size = len(data)
    cases = {
        "bytes=0-99": (0, 99),  # the first bytes
        "bytes=-100": (size - 100, size - 1),  # a suffix
        "bytes=10000-": (10000, size - 1),  # open-ended
        "bytes=10200-99999": (10200, size - 1),  # a last position past the end is clipped
        "bytes=-999999": (0, size - 1),  # a suffix longer than the object is all of it
        "BYTES = 5-5": (5, 5),
        "bytes=1-" + "9" * 5000: (1, size - 1),  # far past any int() limit
    }
    for spec, (first, last) in cases.items():
        response = await ranged(api, asset, spec)
        assert response.status_code == 206, (spec, response.text)
        assert response.content == data[first : last + 1], spec
        assert response.headers["content-range"] == f"bytes {first}-{last}/{size}", spec
        assert response.headers["content-length"] == str(last - first + 1), spec
        assert response.headers["etag"] == asset.etag
        assert response.headers["content-security-policy"] == "sandbox"


async def test_a_range_past_the_end_is_416_with_the_size(api: Api) -> None:
    asset = await make_asset(api, b"0123456789")
    for spec in ("bytes=10-", "bytes=10-20", "bytes=-0", "bytes=" + "9" * 40 + "-"):
        response = await ranged(api, asset, spec)
        assert response.status_code == 416, spec
        assert response.headers["content-range"] == "bytes */10"
        assert response.json()["error"]["code"] == "range_not_satisfiable"


async def test_several_or_malformed_ranges_are_ignored_and_everything_is_sent(api: Api) -> None:
    asset = await make_asset(api, b"0123456789")
    for spec in (
        "bytes=0-1,4-5",
        "bytes=5-2",
        "items=0-1",
        "bytes=-",
        "bytes=a-b",
        SUPERSCRIPT_TWO,
    ):
        response = await ranged(api, asset, spec)
        assert response.status_code == 200, spec
        assert response.content == b"0123456789"
        assert "content-range" not in response.headers


async def test_if_range_applies_the_range_only_for_the_current_strong_etag(api: Api) -> None:
    asset = await make_asset(api, b"0123456789")
    same = await ranged(api, asset, "bytes=0-1", **{"If-Range": asset.etag})
    assert (same.status_code, same.content) == (206, b"01")
    for validator in ('"old"', f"W/{asset.etag}", "Wed, 21 Oct 2015 07:28:00 GMT"):
        changed = await ranged(api, asset, "bytes=0-1", **{"If-Range": validator})
        assert (changed.status_code, changed.content) == (200, b"0123456789"), validator


async def test_head_sends_the_headers_without_the_body(api: Api) -> None:
    asset = await make_asset(api, b"head bytes", content_type="text/plain")
    response = await api.client.head(asset.content, headers=api.acme.headers)
    assert response.status_code == 200 and response.content == b""
    assert response.headers["content-length"] == "10"
    assert response.headers["etag"] == asset.etag
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["content-security-policy"] == "sandbox"
    # Range is defined for GET only: a HEAD describes the whole object.
    ranged_head = await api.client.head(
        asset.content, headers={**api.acme.headers, "Range": "bytes=0-1"}
    )
    assert ranged_head.status_code == 200 and ranged_head.headers["content-length"] == "10"


async def test_an_empty_asset_is_served_whole(api: Api) -> None:
    asset = await make_asset(api, b"")
    response = await get(api, asset.content)
    assert (response.status_code, response.content) == (200, b"")
    assert response.headers["content-length"] == "0"
    assert (await ranged(api, asset, "bytes=-5")).status_code == 200


async def test_a_stream_token_opens_content_but_not_metadata(api: Api) -> None:
    asset = await make_asset(api, b"token bytes")
    created = await api.client.post(f"{api.acme.prefix}/stream-tokens", headers=api.acme.headers)
    token = created.json()["token"]
    content = await api.client.get(asset.content, params={"token": token})
    assert (content.status_code, content.content) == (200, b"token bytes")
    metadata = await api.client.get(asset.path, params={"token": token})
    assert metadata.status_code == 401
    assert metadata.json()["error"]["code"] == "unauthorized"
    bad = await api.client.get(asset.content, params={"token": "st_nope"})
    assert bad.status_code == 401
    assert (await api.client.get(asset.content)).status_code == 401
    # A token is its company's only.
    theirs = await make_asset(api, b"theirs", tenant=api.other)
    other = await api.client.get(theirs.content, params={"token": token})
    assert other.status_code == 403


async def test_other_companies_assets_are_403_or_404(api: Api) -> None:
    asset = await make_asset(api, b"acme only")
    for url in (asset.path, asset.content):
        # Another company's key on acme's path: 403.
        response = await api.client.get(url, headers=api.other.headers)
        assert response.status_code == 403, url
        assert response.json()["error"]["code"] == "forbidden"
        # acme's asset id under the other company's own path: not found.
        theirs = url.replace(str(api.acme.company_id), str(api.other.company_id))
        response = await api.client.get(theirs, headers=api.other.headers)
        assert response.status_code == 404, url
        assert response.json()["error"]["code"] == "not_found"


async def test_non_uuid_and_unknown_asset_ids_are_404(api: Api) -> None:
    prefix = f"{api.acme.prefix}/assets"
    for url in (f"{prefix}/not-a-uuid", f"{prefix}/not-a-uuid/content"):
        response = await get(api, url)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    unknown = uuid.uuid4()
    for url in (f"{prefix}/{unknown}", f"{prefix}/{unknown}/content"):
        response = await get(api, url)
        assert response.status_code == 404
        assert str(unknown) in response.json()["error"]["message"]
    head = await api.client.head(f"{prefix}/{unknown}/content", headers=api.acme.headers)
    assert head.status_code == 404


async def test_an_asset_whose_file_is_gone_is_404_not_500(api: Api) -> None:
    asset = await make_asset(api, b"soon gone")
    (api.storage_dir / asset.object_key).unlink()
    metadata = await get(api, asset.path)
    assert metadata.status_code == 200  # the row is still there
    for response in (
        await get(api, asset.content),
        await get(api, asset.content, **{"If-None-Match": asset.etag}),
        await ranged(api, asset, "bytes=0-1"),
    ):
        assert response.status_code == 404
        message = response.json()["error"]["message"]
        assert asset.id in message and "gone from storage" in message
    head = await api.client.head(asset.content, headers=api.acme.headers)
    assert head.status_code == 404


async def test_an_unreadable_asset_row_is_404_not_500(api: Api) -> None:
    asset = await make_asset(api, b"x")
    broken = {
        "a key escaping the storage root": ("local", "../../etc/passwd"),
        "a key naming a directory": ("local", str(api.acme.company_id)),
        "a postgres object that was never stored": ("postgres", asset.object_key),
    }
    for why, (provider, key) in broken.items():
        api.sql(
            "UPDATE skiplock.assets SET provider = %s, object_key = %s WHERE id = %s",
            (provider, key, asset.id),
        )
        response = await get(api, asset.content)
        assert response.status_code == 404, why
        assert asset.id in response.json()["error"]["message"]


async def test_an_asset_in_a_backend_this_server_lacks_is_503_naming_the_fix(api: Api) -> None:
    """A serve without the S3 settings cannot read `s3` assets: 503 (another server of the
    deployment, or this one once configured, can), never a 404 that says the bytes are gone."""
    asset = await make_asset(api, b"x")
    api.sql("UPDATE skiplock.assets SET provider = 's3' WHERE id = %s", (asset.id,))
    for response in (
        await get(api, asset.content),
        await get(api, asset.content, **{"If-None-Match": asset.etag}),
    ):
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "storage_not_configured"
        assert asset.id in error["message"] and "SKIPLOCK_S3_BUCKET" in error["message"]
