"""The `s3` backend: objects in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2, GCS's S3 API).

Built on obstore (Rust's object_store): async, streamed multipart uploads that it aborts
itself when the input fails or the upload is cancelled, ranged GETs streamed in chunks, and
presigned URLs. Why obstore over aiobotocore: see the README's Dependencies.

An output up to SINGLE_PUT_BYTES goes up as one PUT; a larger one as a multipart upload of
PART_BYTES parts, PART_CONCURRENCY at a time, so an upload holds at most about
(PART_CONCURRENCY + 1) x PART_BYTES in memory whatever the output's size. The sha256 is
computed here on the way (S3's own checksums of a multipart upload are per part, not a
whole-object sha256) and the size limit is enforced here too: raising inside the stream
makes obstore abort the multipart upload, so nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import obstore
from obstore.exceptions import (
    BaseError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from obstore.store import S3Store

from skiplock.errors import ConfigError
from skiplock.storage.config import S3Settings
from skiplock.storage.protocol import (
    CHUNK_SIZE,
    AssetTooLarge,
    StorageUnavailable,
    StoredObject,
    attachment_disposition,
)

if TYPE_CHECKING:
    from obstore import GetOptions
    from obstore.store import ClientConfig, RetryConfig, S3Config

# S3's smallest part is 5 MiB, and 10,000 parts at most: 50 GB, past any sane size limit.
# Measured: a 200 MiB output peaked a worker at 95 MiB RSS with 8 MiB parts, 67 MiB with 5.
PART_BYTES = 5 << 20
PART_CONCURRENCY = 2
SINGLE_PUT_BYTES = PART_BYTES
# A request that cannot connect in 5 s, or stalls 60 s between reads, fails; a whole request
# may take long (a slow client downloading 500 MiB through the API keeps its GET open).
_CLIENT: ClientConfig = {
    "connect_timeout": timedelta(seconds=5),
    "read_timeout": timedelta(seconds=60),
    "timeout": timedelta(hours=6),
}
# A store that is down fails a request within about 10 s: the attempt is retried by the
# queue (with backoff), and /content answers 503 instead of hanging.
_RETRY: RetryConfig = {"max_retries": 3, "retry_timeout": timedelta(seconds=10)}
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*", re.ASCII)
_BINARY = "application/octet-stream"
# See aclose(): how long obstore's runtime gets to drop connections before the process ends.
RUNTIME_SETTLE_SECONDS = 0.5
# obstore raises Python's own FileNotFoundError (and PermissionError) for these at run time,
# though its stubs name its own classes: accept both.
_NOT_FOUND = (NotFoundError, FileNotFoundError)
_DENIED = (PermissionDeniedError, UnauthenticatedError, PermissionError)
_DOWN = (BaseError, ConnectionError, TimeoutError)
# After a cancellation, how long the upload gets to abort (or its object to be deleted).
CANCEL_CLEANUP_SECONDS = 30.0
# A key that never exists: GETting it proves bucket, endpoint and credentials at start.
_PROBE_KEY = ".skiplock-probe-does-not-exist"


class S3Storage:
    provider: str = "s3"

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.key_prefix = settings.prefix
        self.presign_seconds = settings.presign_seconds
        config: S3Config = {"region": settings.region}
        if settings.endpoint:
            # Path-style requests (endpoint/bucket/key): what MinIO, Ceph and most
            # compatibles expect; AWS accepts them too.
            config["endpoint"] = settings.endpoint
            config["virtual_hosted_style_request"] = False
        if settings.access_key_id:
            config["access_key_id"] = settings.access_key_id
            config["secret_access_key"] = settings.secret_access_key or ""
        if settings.session_token:
            config["session_token"] = settings.session_token
        client: ClientConfig = dict(_CLIENT)  # type: ignore[assignment]
        client["allow_http"] = bool(settings.endpoint and settings.endpoint.startswith("http:"))
        self._store = S3Store(
            settings.bucket, config=config, client_options=client, retry_config=_RETRY
        )

    async def put(
        self,
        object_key: str,
        chunks: AsyncIterator[bytes],
        *,
        max_bytes: int,
        content_type: str = "application/octet-stream",
        filename: str | None = None,
    ) -> StoredObject:
        counted = _Counted(chunks, max_bytes)
        stream = counted.stream()
        head = await _read_up_to(stream, SINGLE_PUT_BYTES + 1)
        # A handler's content type becomes a request header: visible ASCII only, as /content.
        safe_type = content_type if _HEADER_SAFE.fullmatch(content_type or "") else _BINARY
        attributes: dict[str, str] = {"Content-Type": safe_type}
        if filename:
            # Kept with the object, so a presigned GET is sent as a download with the right
            # name: obstore cannot sign response-content-disposition into the URL.
            attributes["Content-Disposition"] = attachment_disposition(filename)
        if sum(len(chunk) for chunk in head) <= SINGLE_PUT_BYTES:  # all of it: one request
            upload = obstore.put_async(
                self._store, object_key, b"".join(head), attributes=attributes, use_multipart=False
            )
        else:
            upload = obstore.put_async(
                self._store,
                object_key,
                _prepend(head, stream),
                attributes=attributes,
                chunk_size=PART_BYTES,
                max_concurrency=PART_CONCURRENCY,
            )
        await self._finish(asyncio.ensure_future(upload), counted, object_key)
        return StoredObject(self.provider, object_key, counted.total, counted.sha256())

    async def _finish(
        self, uploading: asyncio.Future[Any], counted: _Counted, object_key: str
    ) -> None:
        """Wait for the upload. Cancelled, it must not simply be dropped (that would leave
        a multipart upload open in the bucket): the stream ends it so obstore aborts, and
        what a single PUT completed meanwhile is deleted."""
        failure = None
        try:
            await asyncio.shield(uploading)
        except asyncio.CancelledError:
            counted.cancelled = True
            await asyncio.wait({uploading}, timeout=CANCEL_CLEANUP_SECONDS)
            if uploading.done() and not uploading.cancelled() and not uploading.exception():
                with contextlib.suppress(StorageUnavailable):
                    await self.delete(object_key)
            raise
        except BaseError as exc:  # only the store's own errors: the stream's go on as they are
            failure = _first_line(exc)
        if failure is not None:  # outside the except block: see _call
            raise StorageUnavailable(f"S3 could not store {object_key!r}: {failure}")

    async def delete(self, object_key: str) -> None:
        with contextlib.suppress(FileNotFoundError):  # already gone
            await _call("delete", object_key, obstore.delete_async(self._store, object_key))

    async def size(self, object_key: str) -> int:
        meta = await _call("read", object_key, obstore.head_async(self._store, object_key))
        return int(meta["size"])

    async def open(
        self, object_key: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Bytes start..end inclusive; the GET is sent here, so a missing object raises
        FileNotFoundError (and a store that is down StorageUnavailable) before any header."""
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"byte range {start}-{end} is not a range of an object")
        options: GetOptions = {}
        if end is not None:
            options["range"] = (start, end + 1)  # obstore's end is exclusive
        elif start:  # no range at all for the whole object: S3 refuses bytes=0- when empty
            options["range"] = {"offset": start}
        get = obstore.get_async(self._store, object_key, options=options)
        result = await _call("read", object_key, get)
        return _chunks(result.stream(min_chunk_size=CHUNK_SIZE), object_key)

    async def presigned_url(self, object_key: str) -> str | None:
        """A GET URL valid presign_seconds, or None when the API streams bytes itself."""
        if self.presign_seconds <= 0:
            return None
        lifetime = timedelta(seconds=self.presign_seconds)
        sign = obstore.sign_async(self._store, "GET", object_key, lifetime)
        url: str = await _call("sign a URL for", object_key, sign)
        return url

    async def check(self) -> None:
        """Prove the bucket is there and the credentials work; ConfigError in one line."""
        problem = await self._probe()
        if problem is not None:  # raised here, with no obstore error chained to it
            raise ConfigError(problem)

    async def _probe(self) -> str | None:
        where = f"bucket {self.settings.bucket!r} at {self.settings.endpoint or 'AWS'}"
        try:
            await obstore.get_async(self._store, f"{self.key_prefix}{_PROBE_KEY}")
        except _NOT_FOUND as exc:
            if "NoSuchBucket" in str(exc):
                return f"skiplock: S3 {where} does not exist; create it or fix SKIPLOCK_S3_BUCKET"
            return None  # the probe key is missing, as it should be
        except _DENIED:
            return (
                f"skiplock: S3 {where} refused access; check AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (skiplock needs s3:GetObject, s3:PutObject, "
                "s3:DeleteObject and s3:ListBucket)"
            )
        except _DOWN as exc:
            return (
                f"skiplock: cannot reach S3 {where} ({_first_line(exc)}); "
                "check SKIPLOCK_S3_ENDPOINT, SKIPLOCK_S3_REGION and the credentials"
            )
        return None

    async def aclose(self) -> None:
        """Let go of the store, then give obstore's runtime a moment to drop its connections.

        obstore 0.12 runs requests on a shared Tokio runtime that is never shut down: a
        process that exits while its threads still tear down a connection aborts during
        interpreter finalization (SIGABRT, exit 134 instead of 0). Measured on this machine:
        13% of short-lived processes aborted after one PUT and one GET; none of 40 once the
        store was dropped and the loop slept 50 ms, nor of 30 with 300 ms. We sleep 500 ms.
        """
        self._store = _CLOSED
        await asyncio.sleep(RUNTIME_SETTLE_SECONDS)


_T = TypeVar("_T")
_CLOSED: Any = None  # what a closed S3Storage holds instead of its store


class _Cancelled(Exception):
    """Raised inside the upload's stream once the put was cancelled."""


class _Counted:
    """The output on its way up: sized, hashed, cut off past max_bytes (AssetTooLarge),
    and ended once `cancelled` (raising inside the stream makes obstore abort)."""

    def __init__(self, chunks: AsyncIterator[bytes], max_bytes: int) -> None:
        self._chunks = chunks
        self._max_bytes = max_bytes
        self._hasher = hashlib.sha256()
        self.total = 0
        self.cancelled = False

    async def stream(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            if self.cancelled:
                raise _Cancelled
            self.total += len(chunk)
            if self.total > self._max_bytes:
                raise AssetTooLarge(self._max_bytes)
            self._hasher.update(chunk)
            yield chunk

    def sha256(self) -> str:
        return self._hasher.hexdigest()


async def _read_up_to(stream: AsyncIterator[bytes], limit: int) -> list[bytes]:
    """The first chunks of stream, at least `limit` bytes of them unless it ends sooner."""
    head: list[bytes] = []
    size = 0
    while size < limit:
        try:
            chunk = await anext(stream)
        except StopAsyncIteration:
            break
        head.append(chunk)
        size += len(chunk)
    return head


async def _prepend(head: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    while head:
        yield head.pop(0)  # let go of each chunk once obstore has it
    async for chunk in rest:
        yield chunk


async def _chunks(stream: Any, object_key: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in stream:
            yield bytes(chunk)
    except _DOWN as exc:
        failure = _first_line(exc)
    else:
        return
    raise StorageUnavailable(f"S3 could not read {object_key!r}: {failure}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


async def _call(action: str, object_key: str, operation: Awaitable[_T]) -> _T:
    """Await one obstore call: FileNotFoundError when the object is missing,
    StorageUnavailable when the store did not answer.

    The new exception is raised outside the `except` block, so it carries no obstore error
    as its context: a chain of them left for the garbage collector aborts the interpreter at
    exit (SIGABRT from obstore's runtime), seen as a worker exiting 134 instead of 0.
    """
    missing, failure = False, ""
    try:
        return await operation
    except _NOT_FOUND:
        missing = True
    except _DOWN as exc:
        failure = _first_line(exc)
    if missing:
        raise FileNotFoundError(f"no object {object_key!r} in the bucket")
    raise StorageUnavailable(f"S3 could not {action} {object_key!r}: {failure}")
