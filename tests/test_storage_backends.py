"""Every storage backend against the same contract, on real stores: local files, a real S3
protocol endpoint (moto, inspected with boto3) and the skiplock database (asset_chunks).

Whole objects or nothing: content, sha256 and size as stored; Range reads; over-limit,
failed and cancelled puts leave no object, no multipart upload and no chunk row."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable

import httpx
import psycopg
import pytest

from s3_fixtures import Bucket
from skiplock.storage import (
    AssetTooLarge,
    Storage,
    StorageUnavailable,
    bytes_chunks,
)
from skiplock.storage.postgres import PostgresStorage
from skiplock.storage.s3 import PART_BYTES
from storage_backends import Backend, key, pattern, s3_storage

MiB = 1 << 20


async def read_all(
    storage: Storage, object_key: str, start: int = 0, end: int | None = None
) -> bytes:
    return b"".join([chunk async for chunk in await storage.open(object_key, start, end)])


@pytest.mark.parametrize("size", [0, 1, 3 * MiB + 17, 2 * PART_BYTES + 5])
async def test_put_stores_the_bytes_with_their_sha256_and_size(backend: Backend, size: int) -> None:
    """Sizes: empty, one byte, several chunks, and past two S3 parts (a multipart upload)."""
    data, object_key = pattern(size), key()
    stored = await backend.storage.put(object_key, bytes_chunks(data), max_bytes=100 * MiB)
    try:
        assert stored.provider == backend.storage.provider
        assert stored.object_key == object_key
        assert (stored.byte_size, stored.sha256) == (size, hashlib.sha256(data).hexdigest())
        assert backend.stored() == [object_key]
        assert await backend.storage.size(object_key) == size
        assert await read_all(backend.storage, object_key) == data
    finally:
        await _close(backend.storage)


async def test_ranges_read_only_the_bytes_asked_for(backend: Backend) -> None:
    data, object_key = pattern(5 * MiB + 3), key()
    await backend.storage.put(object_key, bytes_chunks(data), max_bytes=100 * MiB)
    try:
        for start, end in [(0, 0), (1, 10), (MiB - 1, MiB), (4 * MiB + 7, None), (0, 10**9)]:
            want = data[start : None if end is None else end + 1]
            assert await read_all(backend.storage, object_key, start, end) == want, (start, end)
    finally:
        await _close(backend.storage)


async def test_a_missing_object_is_file_not_found_and_delete_is_idempotent(
    backend: Backend,
) -> None:
    object_key = key()
    try:
        with pytest.raises(FileNotFoundError):
            await backend.storage.size(object_key)
        with pytest.raises(FileNotFoundError):
            await backend.storage.open(object_key)
        await backend.storage.put(object_key, bytes_chunks(b"abc"), max_bytes=10)
        await backend.storage.delete(object_key)
        await backend.storage.delete(object_key)
        assert backend.stored() == []
    finally:
        await _close(backend.storage)


@pytest.mark.parametrize("size", [2 * MiB, 3 * PART_BYTES])
async def test_an_output_over_the_limit_is_cut_off_and_leaves_nothing(
    backend: Backend, size: int
) -> None:
    """Below and past S3's multipart threshold: no object, no upload, no chunk row."""
    consumed = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal consumed
        for _ in range(0, size, MiB):
            consumed += MiB
            yield pattern(MiB)

    limit = size - MiB
    with pytest.raises(AssetTooLarge) as refused:
        await backend.storage.put(key(), chunks(), max_bytes=limit)
    try:
        assert str(limit) in str(refused.value)
        assert consumed <= limit + MiB  # cut off while streaming, not after reading it all
        assert backend.stored() == []
    finally:
        await _close(backend.storage)


async def test_a_failing_or_cancelled_put_leaves_nothing(backend: Backend) -> None:
    started = asyncio.Event()

    async def failing() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield pattern(MiB)
        raise OSError("the handler's file went away")

    async def endless() -> AsyncIterator[bytes]:
        for n in range(10_000):
            if n == 12:
                started.set()
            yield pattern(MiB)
            await asyncio.sleep(0)

    try:
        with pytest.raises(OSError, match="went away"):
            await backend.storage.put(key(), failing(), max_bytes=100 * MiB)
        put = asyncio.create_task(backend.storage.put(key(), endless(), max_bytes=10**10))
        await started.wait()
        put.cancel()
        with pytest.raises(asyncio.CancelledError):
            await put
        await _eventually(lambda: backend.stored() == [])
    finally:
        await _close(backend.storage)


async def test_s3_objects_carry_type_and_attachment_for_presigned_gets(bucket: Bucket) -> None:
    storage = s3_storage(bucket, presign_seconds=60)
    object_key = key("chart.svg")
    data = b"<svg xmlns='http://www.w3.org/2000/svg'/>"
    await storage.put(
        object_key,
        bytes_chunks(data),
        max_bytes=MiB,
        content_type="image/svg+xml",
        filename="chart été.svg",
    )
    head = bucket.client.head_object(Bucket=bucket.name, Key=object_key)
    assert head["ContentType"] == "image/svg+xml"
    assert head["ContentDisposition"].startswith("attachment;")
    url = await storage.presigned_url(object_key)
    assert url is not None and "X-Amz-Signature=" in url
    async with httpx.AsyncClient() as anonymous:  # no credentials at all
        response = await anonymous.get(url)
        assert response.status_code == 200 and response.content == data
        assert response.headers["content-disposition"].startswith("attachment;")
        assert (
            "filename*=UTF-8''chart%20%C3%A9t%C3%A9.svg" in response.headers["content-disposition"]
        )
        assert (await anonymous.get(url.split("?")[0])).status_code == 403  # unsigned: refused


async def test_s3_prefix_is_part_of_the_key_and_presign_off_gives_no_url(bucket: Bucket) -> None:
    storage = s3_storage(bucket, prefix="tenant-files/")
    assert await storage.presigned_url("anything") is None
    assert storage.key_prefix == "tenant-files/"


async def test_a_store_that_is_down_is_storage_unavailable_not_a_hang(bucket: Bucket) -> None:
    from processes import free_port

    down = s3_storage(bucket, endpoint=f"http://127.0.0.1:{free_port()}")
    for attempt in (
        down.put(key(), bytes_chunks(b"x"), max_bytes=10),
        down.size(key()),
        down.open(key()),
        down.delete(key()),
    ):
        with pytest.raises(StorageUnavailable):
            await asyncio.wait_for(attempt, 30)


async def test_postgres_chunks_are_fixed_size_and_a_range_reads_from_its_chunk(
    database_url: str,
) -> None:
    storage = PostgresStorage(database_url)
    object_key = key()
    data = pattern(4 * MiB + 100)
    # Input chunks of odd sizes are re-cut into fixed 1 MiB chunks.
    odd = [data[i : i + 333_333] for i in range(0, len(data), 333_333)]

    async def chunks() -> AsyncIterator[bytes]:
        for piece in odd:
            yield piece

    try:
        await storage.put(object_key, chunks(), max_bytes=10 * MiB)
        with psycopg.connect(database_url) as conn:
            rows = conn.execute(
                "SELECT byte_offset, octet_length(data) FROM skiplock.asset_chunks "
                "WHERE object_key = %s ORDER BY byte_offset",
                (object_key,),
            ).fetchall()
        assert rows == [(0, MiB), (MiB, MiB), (2 * MiB, MiB), (3 * MiB, MiB), (4 * MiB, 100)]
        assert await read_all(storage, object_key, 4 * MiB + 50, None) == data[4 * MiB + 50 :]
    finally:
        await storage.aclose()


async def _close(storage: Storage) -> None:
    close = getattr(storage, "aclose", None)
    if close is not None:
        await close()


async def _eventually(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_s3_a_content_type_that_is_no_header_value_is_stored_as_binary(
    bucket: Bucket,
) -> None:
    storage = s3_storage(bucket)
    object_key = key()
    await storage.put(
        object_key, bytes_chunks(b"x"), max_bytes=10, content_type="text/html\r\nX-Evil: 1"
    )
    head = bucket.client.head_object(Bucket=bucket.name, Key=object_key)
    assert head["ContentType"] == "application/octet-stream"
    assert "X-Evil" not in str(head["ResponseMetadata"]["HTTPHeaders"])
