"""The `postgres` backend: objects as rows of bytea chunks in skiplock.asset_chunks.

Every process that reaches the database can read and write them, so a deployment of several
hosts needs nothing but Postgres. Meant for outputs of a few MiB: each byte is written to
the table and to the WAL (and to every replica and backup), and deleting is a vacuum's work
(see the README, "Running on many hosts").

A put writes CHUNK_BYTES chunks, BATCH_CHUNKS per short transaction of its own, before the
job's completion commits, so no transaction spans an upload and the event horizon (SPEC §2)
is never held back for long. A put that fails (over the size limit, cancelled, the database
gone) deletes what it wrote; one that never gets to (the worker was killed) is found by
housekeeping through its asset_uploads record. A read fetches BATCH_CHUNKS chunks per
statement from the chunk holding its first byte, so a Range never loads the whole object.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from skiplock import db, store
from skiplock.storage.protocol import AssetTooLarge, StorageUnavailable, StoredObject

# Chunks go and come back in binary (the %(datas)b parameter, binary results): as text,
# bytea is hex. Measured with bench/storage/run.py, 100 MiB: upload 23 -> 115 MiB/s.
# 1 MiB chunks: TOAST splits each into ~2 KB pieces anyway; fewer, larger rows keep the
# primary key small. 4 per transaction: 4 MiB per commit, and reads hold at most 4 MiB.
CHUNK_BYTES = 1 << 20
BATCH_CHUNKS = 4
DELETE_BATCH = 64
POOL_WAIT_SECONDS = 10.0


class PostgresStorage:
    provider: str = "postgres"

    def __init__(self, database_url: str, *, prepare: bool = True) -> None:
        self._url = database_url
        self._prepare = prepare
        self._pool: AsyncConnectionPool | None = None
        self._opening = asyncio.Lock()

    async def _connections(self) -> AsyncConnectionPool:
        """Its own small pool, opened on first use (a serve that never reads a `postgres`
        asset opens none); psycopg errors become StorageUnavailable."""
        async with self._opening:
            if self._pool is None:
                try:
                    # A caller waits at most 10 s for a connection: a database that is down
                    # fails the attempt (retried) or the download (503) soon enough.
                    self._pool = await db.open_pool(
                        self._url,
                        min_size=0,
                        max_size=4,
                        name="storage",
                        prepare=self._prepare,
                        timeout=POOL_WAIT_SECONDS,
                    )
                except Exception as exc:
                    raise StorageUnavailable(f"Postgres storage is unavailable: {exc}") from None
            return self._pool

    async def put(
        self,
        object_key: str,
        chunks: AsyncIterator[bytes],
        *,
        max_bytes: int,
        content_type: str = "application/octet-stream",  # kept in the assets row
        filename: str | None = None,
    ) -> StoredObject:
        hasher = hashlib.sha256()
        written = 0
        try:
            async for batch in _fixed_batches(chunks, max_bytes):
                for chunk in batch:
                    hasher.update(chunk)
                await self._write(object_key, written, batch)
                written += sum(len(chunk) for chunk in batch)
        except BaseException:
            # Also on cancellation: shielded, so a second cancel cannot leave chunks behind.
            await asyncio.shield(self._discard(object_key))
            raise
        return StoredObject(self.provider, object_key, written, hasher.hexdigest())

    async def _write(self, object_key: str, offset: int, batch: list[bytes]) -> None:
        offsets = []
        for chunk in batch:
            offsets.append(offset)
            offset += len(chunk)
        params = {"object_key": object_key, "byte_offsets": offsets, "datas": batch}
        await self._execute("write_asset_chunks", params)

    async def _discard(self, object_key: str) -> None:
        # On failure the upload's record stays: housekeeping removes the chunks later.
        with contextlib.suppress(StorageUnavailable):
            await self.delete(object_key)

    async def delete(self, object_key: str) -> None:
        """Remove every chunk, DELETE_BATCH per transaction."""
        params = {"object_key": object_key, "limit": DELETE_BATCH}
        while await self._execute("delete_asset_chunks", params) == DELETE_BATCH:
            pass

    async def size(self, object_key: str) -> int:
        rows = await self._fetch("asset_chunks_size", {"object_key": object_key})
        if not rows:
            raise FileNotFoundError(f"no object {object_key!r} in skiplock.asset_chunks")
        return int(rows[0][0])

    async def open(
        self, object_key: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Bytes start..end inclusive; the first batch is read here, so a missing object
        raises FileNotFoundError before a caller has sent any header."""
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"byte range {start}-{end} is not a range of an object")
        last = end if end is not None else (1 << 62)
        first_batch = await self._read(object_key, start, last)
        if not first_batch:
            raise FileNotFoundError(f"no object {object_key!r} in skiplock.asset_chunks")
        return self._stream(object_key, start, last, first_batch)

    async def _read(self, object_key: str, start: int, end: int) -> list[tuple[int, bytes]]:
        params = {"object_key": object_key, "start": start, "end": end, "limit": BATCH_CHUNKS}
        return [(int(o), bytes(d)) for o, d in await self._fetch("read_asset_chunks", params)]

    async def _stream(
        self, object_key: str, start: int, end: int, batch: list[tuple[int, bytes]]
    ) -> AsyncIterator[bytes]:
        position = start  # the next byte to send
        while batch:
            for offset, data in batch:
                if offset > position:
                    raise StorageUnavailable(f"object {object_key!r} lost a chunk while read")
                piece = data[position - offset : end - offset + 1]
                if piece:
                    yield piece
                    position += len(piece)
            if position > end or len(batch) < BATCH_CHUNKS:
                return
            batch = await self._read(object_key, position, end)

    async def _execute(self, name: str, params: dict[str, Any]) -> int:
        pool = await self._connections()
        try:
            async with pool.connection() as conn:
                cursor = await conn.execute(store.query(name), params)
                return cursor.rowcount
        except psycopg.OperationalError as exc:
            raise StorageUnavailable(f"Postgres storage is unavailable: {exc}") from None

    async def _fetch(self, name: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        pool = await self._connections()
        try:
            async with pool.connection() as conn:
                # Binary results: bytea as text is hex, twice the bytes and a decode.
                cursor = await conn.execute(store.query(name), params, binary=True)
                return await cursor.fetchall()
        except (psycopg.OperationalError, TimeoutError) as exc:
            raise StorageUnavailable(f"Postgres storage is unavailable: {exc}") from None

    async def check(self) -> None:
        """Nothing to probe: the database is checked at start anyway."""

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def _fixed_batches(
    chunks: AsyncIterator[bytes], max_bytes: int
) -> AsyncIterator[list[bytes]]:
    """The input re-cut into CHUNK_BYTES chunks, BATCH_CHUNKS per batch (the last ones
    shorter; an empty input is one empty chunk, so an empty object still has a row);
    AssetTooLarge as soon as the total passes max_bytes."""
    total, pending, batch = 0, bytearray(), list[bytes]()
    async for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise AssetTooLarge(max_bytes)
        pending += chunk
        while len(pending) >= CHUNK_BYTES:
            batch.append(bytes(pending[:CHUNK_BYTES]))
            del pending[:CHUNK_BYTES]
            if len(batch) == BATCH_CHUNKS:
                yield batch
                batch = []
    if pending or not (batch or total):
        batch.append(bytes(pending))
    if batch:
        yield batch
