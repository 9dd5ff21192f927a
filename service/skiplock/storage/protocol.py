"""The Storage protocol every backend implements, and what all of them share: object keys
and byte streams.

An object is stored whole or not at all: `put` streams chunks in, hashes them on the way,
stops as soon as the total passes the size limit and leaves nothing behind on any failure.
The protocol speaks only of keys and byte streams, so each backend is a module of its own
beside this one (local.py, s3.py, postgres.py); registry.py picks one per provider.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from skiplock.errors import SkiplockError

CHUNK_SIZE = 1 << 20
_MAX_FILENAME = 100
_MAX_EXTENSION = 16  # longer "extensions" are just part of the name
_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")


class AssetTooLarge(SkiplockError):
    """An output passed SKIPLOCK_GENERATED_ASSET_MAX_BYTES while it was being stored."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        super().__init__(
            f"output is larger than SKIPLOCK_GENERATED_ASSET_MAX_BYTES={max_bytes} bytes "
            f"({max_bytes / (1 << 20):.1f} MiB)"
        )


class StorageUnavailable(SkiplockError):
    """The store did not answer (down, unreachable, timed out): the job attempt fails and is
    retried like any error, and /content answers 503."""


@dataclass(frozen=True)
class StoredObject:
    provider: str
    object_key: str
    byte_size: int
    sha256: str  # lowercase hex


class Storage(Protocol):
    provider: str

    async def put(
        self,
        object_key: str,
        chunks: AsyncIterator[bytes],
        *,
        max_bytes: int,
        content_type: str = "application/octet-stream",
        filename: str | None = None,
    ) -> StoredObject:
        """Store the chunks under object_key; AssetTooLarge past max_bytes, leaving nothing.

        content_type and filename are kept with the object where the store has metadata
        (S3 serves them on a presigned GET); StoredObject.object_key is where it landed.
        """

    async def delete(self, object_key: str) -> None:
        """Remove the object; nothing happens when it is already gone."""

    async def open(
        self, object_key: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Bytes start..end inclusive (an HTTP Range); FileNotFoundError when missing."""

    async def size(self, object_key: str) -> int:
        """The object's byte size; FileNotFoundError when missing."""


def safe_filename(filename: str) -> str:
    """filename reduced to [A-Za-z0-9._-], no leading dots, at most ~100 chars, never empty."""
    name = _UNSAFE_FILENAME_CHARS.sub("_", filename).lstrip(".")
    if len(name) > _MAX_FILENAME:
        stem, dot, extension = name.rpartition(".")
        if dot and stem and 0 < len(extension) <= _MAX_EXTENSION:
            name = f"{stem[: _MAX_FILENAME - len(extension) - 1]}.{extension}"
        else:
            name = name[:_MAX_FILENAME]
    return name or "output"


def attachment_disposition(filename: str) -> str:
    """`attachment` with an ASCII `filename=` for old clients and the exact name as
    `filename*=UTF-8''…` (RFC 6266, percent-encoded per RFC 5987), which clients prefer."""
    encoded = quote(filename, safe="", errors="replace")
    return f"attachment; filename=\"{safe_filename(filename)}\"; filename*=UTF-8''{encoded}"


def object_key_for(
    company_id: uuid.UUID, filename: str, *, now: datetime, object_id: uuid.UUID | None = None
) -> str:
    """`{company}/generated/{yyyy}/{mm}/{dd}/{uuid}-{safe filename}`, dated in UTC.

    The uuid keeps keys unique, so a put never overwrites another job's output; a naive
    `now` is taken as UTC.
    """
    day = now.astimezone(UTC) if now.tzinfo else now
    object_id = object_id or uuid.uuid4()
    return f"{company_id}/generated/{day:%Y/%m/%d}/{object_id}-{safe_filename(filename)}"


async def file_chunks(path: Path, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
    """The file's bytes, chunk_size at a time, each read in a thread."""
    async for chunk in read_range(path, 0, None, chunk_size):
        yield chunk


async def bytes_chunks(data: bytes, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), chunk_size):
        yield data[offset : offset + chunk_size]


async def read_range(
    path: Path, start: int, length: int | None, chunk_size: int
) -> AsyncIterator[bytes]:
    """length bytes of path from start (to the end when None), chunk_size at a time."""
    with await asyncio.to_thread(path.open, "rb") as file:
        await asyncio.to_thread(file.seek, start)
        while length is None or length > 0:
            want = chunk_size if length is None else min(chunk_size, length)
            chunk = await asyncio.to_thread(file.read, want)
            if not chunk:
                return
            if length is not None:
                length -= len(chunk)
            yield chunk
