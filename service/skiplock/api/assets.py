"""Asset routes: an asset's metadata, and its bytes (SPEC §4).

`/content` reads the object from the backend its row names (storage/registry.py) and streams
it a chunk at a time (never read whole), with the headers
that keep a rendered SVG or HTML from running script on the API's origin (`attachment`,
`nosniff`, `Content-Security-Policy: sandbox`), the sha256 as a strong ETag
(`If-None-Match` → 304) and single byte ranges (`Range` → 206, or 416). Multiple or malformed
ranges are ignored and the whole object is sent, as RFC 9110 §14.2 allows. With
SKIPLOCK_S3_PRESIGN_SECONDS > 0 an `s3` asset is answered with a 307 to a presigned GET
instead (after the same checks). A backend this server lacks, or a store that does not
answer, is a 503 naming the fix, never a 500.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from skiplock import store
from skiplock.api.auth import authorize
from skiplock.api.errors import ApiError
from skiplock.events import utc_text
from skiplock.storage import Storage, StorageUnavailable
from skiplock.storage import attachment_disposition as content_disposition
from skiplock.storage.registry import StorageNotConfigured, StorageRegistry

# Private: the bytes never change (a new output is a new asset), but they are a tenant's,
# so only the caller's own cache may keep them; an hour keeps a dashboard's previews cheap.
CACHE_CONTROL = "private, max-age=3600"
# `bytes=first-last`, `bytes=first-` or `bytes=-suffix`; the unit is case-insensitive.
_RANGE = re.compile(r"\s*bytes\s*=\s*([0-9]*)\s*-\s*([0-9]*)\s*", re.IGNORECASE | re.ASCII)
# Visible ASCII only: a header value Starlette cannot encode, or one carrying a line break,
# would otherwise fail the response after the route returned.
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*", re.ASCII)
# Wider than any object: longer digit strings are clipped to this instead of parsed, so a
# Range of a million digits costs nothing (and int() refuses over 4300 digits anyway).
_MAX_POSITION = 10**18


def asset_json(row: dict[str, Any]) -> dict[str, Any]:
    """An asset as the API shows it (SPEC §4), camelCase, timestamps RFC 3339 UTC."""
    return {
        "id": str(row["id"]),
        "contentType": row["content_type"],
        "byteSize": row["byte_size"],
        "sha256": row["sha256"],
        "originalFilename": row["original_filename"],
        "sourceTaskId": row["source_task_id"],
        "createdAt": utc_text(row["created_at"]),
    }


async def get_asset(request: Request) -> JSONResponse:
    # No ?token= here: tokens reach only what a browser must open without headers.
    row = await _find_asset(request, token_allowed=False)
    return JSONResponse(asset_json(row))


async def get_asset_content(request: Request) -> Response:
    row = await _find_asset(request, token_allowed=True)
    storages: StorageRegistry = request.app.state.storages
    storage = _backend(storages, row)
    etag = f'"{row["sha256"]}"'
    headers = _content_headers(row, etag)
    cached = _etag_matches(request.headers.get("if-none-match"), etag)
    redirect = await _presigned(storages, row)
    if redirect is not None and not cached:
        # The URL expires: no cache may keep the redirect longer than this answer.
        return Response(
            status_code=307, headers={"Location": redirect, "Cache-Control": "no-store"}
        )
    if redirect is None:
        size = await _stored_size(storage, row)  # a lost object is 404, even when cached
    if cached:
        return Response(status_code=304, headers=headers)
    # Ranges are defined for GET only (RFC 9110 §14.2): a HEAD describes the whole object.
    span = _requested_span(request, etag, size) if request.method == "GET" else None
    start, end = span or (0, size - 1)
    headers["Content-Length"] = str(end - start + 1)
    status = 200
    if span is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    if request.method == "HEAD" or size == 0:  # no bytes to send (and no span to open)
        return Response(status_code=status, headers=headers)
    chunks = await _open(storage, row, start, end)
    return StreamingResponse(chunks, status_code=status, headers=headers)


async def _find_asset(request: Request, *, token_allowed: bool) -> dict[str, Any]:
    """The asset row, after auth in SPEC §4's order; 404 when it is not this company's."""
    auth = await authorize(request, "assetId", token_allowed=token_allowed)
    asset_id = auth.ids["assetId"]
    async with request.app.state.pool.connection() as conn:
        row = await store.find_asset(conn, auth.company_id, asset_id)
    if row is None:
        raise ApiError(404, f"no such asset: {asset_id}")
    return row


def _no_content(asset_id: uuid.UUID, why: str) -> ApiError:
    """404 for an asset row whose bytes cannot be served: a clear answer, never a 500."""
    return ApiError(404, f"asset {asset_id} has no stored content ({why})")


def _unavailable(asset_id: uuid.UUID, why: str, code: str = "storage_unavailable") -> ApiError:
    """503: the bytes exist but cannot be reached from here now (a retry, or another server
    of the deployment, may succeed)."""
    return ApiError(503, f"asset {asset_id} cannot be read now: {why}", code=code)


def _backend(storages: StorageRegistry, row: dict[str, Any]) -> Storage:
    """The backend the row names; 503 when this server has no settings for it."""
    try:
        return storages.backend(row["provider"])
    except StorageNotConfigured as exc:
        raise _unavailable(row["id"], str(exc), code="storage_not_configured") from None


async def _presigned(storages: StorageRegistry, row: dict[str, Any]) -> str | None:
    try:
        return await storages.presigned_url(row["provider"], row["object_key"])
    except StorageUnavailable as exc:
        raise _unavailable(row["id"], str(exc)) from None


async def _stored_size(storage: Storage, row: dict[str, Any]) -> int:
    """The stored object's real size (Content-Length must match the bytes sent); 404 when
    the object is missing or its key unusable, 503 when the store does not answer."""
    asset_id = row["id"]
    try:
        return await storage.size(row["object_key"])
    except StorageUnavailable as exc:
        raise _unavailable(asset_id, str(exc)) from None
    except FileNotFoundError:
        raise _no_content(asset_id, "its file is gone from storage") from None
    except (OSError, ValueError) as exc:  # a bad key, a permission: nothing a retry fixes
        raise _no_content(asset_id, f"storage cannot read it: {type(exc).__name__}") from None


async def _open(
    storage: Storage, row: dict[str, Any], start: int, end: int
) -> AsyncIterator[bytes]:
    """The bytes start..end; 404 when the object went away since it was sized."""
    try:
        return await storage.open(row["object_key"], start, end)
    except StorageUnavailable as exc:
        raise _unavailable(row["id"], str(exc)) from None
    except (OSError, ValueError):
        raise _no_content(row["id"], "its file is gone from storage") from None


def _content_headers(row: dict[str, Any], etag: str) -> dict[str, str]:
    """The headers of every /content answer, 200, 206 and 304 alike."""
    content_type = row["content_type"]
    if not _HEADER_SAFE.fullmatch(content_type or ""):
        content_type = "application/octet-stream"
    return {
        "Content-Type": content_type,
        "Content-Disposition": content_disposition(row["original_filename"] or str(row["id"])),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": CACHE_CONTROL,
    }


def _etag_matches(header: str | None, etag: str) -> bool:
    """Whether If-None-Match names this ETag: `*`, or a list of tags compared weakly
    (a `W/` prefix is ignored, RFC 9110 §13.1.2)."""
    if header is None:
        return False
    tags = [tag.strip() for tag in header.split(",")]
    return "*" in tags or etag in (tag.removeprefix("W/") for tag in tags)


def _requested_span(request: Request, etag: str, size: int) -> tuple[int, int] | None:
    """The one byte span asked for, or None to send everything; 416 when unsatisfiable."""
    header = request.headers.get("range")
    if header is None:
        return None
    if_range = request.headers.get("if-range")
    # If-Range holding anything but this exact strong ETag (an old tag, a date: we send no
    # Last-Modified) means "the whole object if it changed": ignore the Range.
    if if_range is not None and if_range.strip() != etag:
        return None
    return byte_span(header, size)


def byte_span(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive span a single-range `Range` header asks of size bytes.

    None (send all) for a header that is malformed or asks for several ranges, and for an
    empty object, where no span can be written; ApiError 416 when it asks only past the end.
    """
    match = _RANGE.fullmatch(header)
    if match is None or size == 0:
        return None
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        return None
    if not first_text:  # bytes=-n: the last n bytes
        suffix = _position(last_text)
        if suffix == 0:
            raise _unsatisfiable(size)
        return max(size - suffix, 0), size - 1
    first = _position(first_text)
    last = _position(last_text) if last_text else _MAX_POSITION  # bytes=first-: to the end
    if last < first:  # invalid, not unsatisfiable (RFC 9110 §14.1.1)
        return None
    if first >= size:
        raise _unsatisfiable(size)
    return first, min(last, size - 1)


def _position(digits: str) -> int:
    return int(digits) if len(digits) <= 18 else _MAX_POSITION


def _unsatisfiable(size: int) -> ApiError:
    return ApiError(
        416,
        f"the Range asks only for bytes past the end of this {size}-byte asset",
        headers={"Content-Range": f"bytes */{size}"},
    )
