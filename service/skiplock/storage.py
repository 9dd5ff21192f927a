"""Where job outputs (assets) go: the Storage protocol and the local-disk backend.

An object is stored whole or not at all: `put` streams chunks in, hashes them on the way,
stops as soon as the total passes the size limit and leaves nothing behind on any failure,
holding one write batch plus one chunk in memory whatever the size. The protocol speaks only
of keys and byte streams, so an object-store backend (S3 and compatibles) fits beside
`LocalDiskStorage` when every host must reach the assets.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import re
import secrets
import stat
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol, TypeVar

from skiplock.errors import SkiplockError

CHUNK_SIZE = 1 << 20
# Small chunks are gathered up to this much per thread hop: a hop costs ~64 us, hashing and
# writing 64 KiB ~45 us, so 200 MiB in 64 KiB chunks took 0.45 s unbatched, 0.33 s batched.
_WRITE_BATCH = 1 << 20
_MAX_FILENAME = 100
_MAX_EXTENSION = 16  # longer "extensions" are just part of the name
_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")

_T = TypeVar("_T")


class AssetTooLarge(SkiplockError):
    """An output passed SKIPLOCK_GENERATED_ASSET_MAX_BYTES while it was being stored."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        super().__init__(
            f"output is larger than SKIPLOCK_GENERATED_ASSET_MAX_BYTES={max_bytes} bytes "
            f"({max_bytes / (1 << 20):.1f} MiB)"
        )


@dataclass(frozen=True)
class StoredObject:
    provider: str
    object_key: str
    byte_size: int
    sha256: str  # lowercase hex


class Storage(Protocol):
    provider: str

    async def put(
        self, object_key: str, chunks: AsyncIterator[bytes], *, max_bytes: int
    ) -> StoredObject:
        """Store the chunks under object_key; AssetTooLarge past max_bytes, leaving nothing."""

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
    async for chunk in _read_range(path, 0, None, chunk_size):
        yield chunk


async def bytes_chunks(data: bytes, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), chunk_size):
        yield data[offset : offset + chunk_size]


async def _read_range(
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


async def _in_thread(function: Callable[[], _T]) -> _T:
    """function() in a thread; when cancelled, it finishes before the CancelledError goes on.

    A thread cannot be stopped, and a cleanup racing a write or rename still in flight could
    unlink the temp file before that thread creates or renames it.
    """
    task = asyncio.ensure_future(asyncio.to_thread(function))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


class _PendingWrite:
    """The temp file of one put, beside its final path so the closing rename is atomic.

    Every method runs in a thread. The temp name starts with a dot and carries random hex, so
    concurrent puts never share one and listings can tell it from a finished object.
    """

    def __init__(self, final: Path) -> None:
        self.final = final
        self.temp = final.with_name(f".{final.name}.tmp-{secrets.token_hex(8)}")
        self.hasher = hashlib.sha256()
        self.file: BinaryIO | None = None
        self.renamed = False

    def _opened(self) -> BinaryIO:
        if self.file is None:  # created by the first write, so an empty put costs no extra hop
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self.file = self.temp.open("xb")
        return self.file

    def write(self, batch: list[bytes]) -> None:
        file = self._opened()
        for chunk in batch:
            # Hashed here, not on the event loop: hashlib releases the GIL for large buffers.
            self.hasher.update(chunk)
            file.write(chunk)

    def commit(self) -> None:
        """fsync the data, rename onto the final path, fsync the directory naming it."""
        file = self._opened()
        file.flush()
        os.fsync(file.fileno())
        file.close()
        os.replace(self.temp, self.final)
        self.renamed = True
        directory = os.open(self.final.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def discard(self) -> None:
        """Remove every trace; the caller never learns of an object that failed midway."""
        if self.file is not None:
            with contextlib.suppress(OSError):  # close flushes, and the disk may be full
                self.file.close()
        self.temp.unlink(missing_ok=True)
        if self.renamed:
            self.final.unlink(missing_ok=True)


class LocalDiskStorage:
    """Objects as files under root, at root/object_key."""

    provider: str = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, object_key: str) -> Path:
        """root/object_key; ValueError for a key that would land outside root."""
        key = PurePosixPath(object_key)
        if not object_key or key.is_absolute() or ".." in key.parts or "\x00" in object_key:
            raise ValueError(
                f"object key {object_key!r} escapes the storage root; "
                "keys are relative paths without '..'"
            )
        return self.root.joinpath(*key.parts)

    async def put(
        self, object_key: str, chunks: AsyncIterator[bytes], *, max_bytes: int
    ) -> StoredObject:
        pending = _PendingWrite(self._path(object_key))
        try:
            byte_size = await self._write_all(pending, chunks, max_bytes)
            await _in_thread(pending.commit)
        except BaseException:
            # Also on cancellation; discard() is a close and an unlink or two, quick enough
            # to run on the loop, and it must not be interrupted by a second cancellation.
            pending.discard()
            raise
        return StoredObject(self.provider, object_key, byte_size, pending.hasher.hexdigest())

    @staticmethod
    async def _write_all(
        pending: _PendingWrite, chunks: AsyncIterator[bytes], max_bytes: int
    ) -> int:
        """Write every chunk, a batch per thread hop; the total, checked before each write."""
        total, batched, batch = 0, 0, list[bytes]()
        async for chunk in chunks:
            total += len(chunk)
            if total > max_bytes:
                raise AssetTooLarge(max_bytes)
            batch.append(chunk)
            batched += len(chunk)
            if batched >= _WRITE_BATCH:
                await _in_thread(functools.partial(pending.write, batch))
                batch, batched = [], 0
        if batch:
            await _in_thread(functools.partial(pending.write, batch))
        return total

    async def delete(self, object_key: str) -> None:
        await asyncio.to_thread(self._path(object_key).unlink, missing_ok=True)

    async def open(
        self, object_key: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Bytes start..end inclusive, end clipped to the last byte.

        Awaiting this stats the file, so a missing object raises FileNotFoundError here,
        before a caller has sent any response headers.
        """
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"byte range {start}-{end} is not a range of an object")
        path = self._path(object_key)
        await asyncio.to_thread(_file_size, path)
        length = None if end is None else end - start + 1
        return _read_range(path, start, length, CHUNK_SIZE)

    async def size(self, object_key: str) -> int:
        return await asyncio.to_thread(_file_size, self._path(object_key))


def _file_size(path: Path) -> int:
    """Size of the regular file at path; a directory (a key prefix) is no object either."""
    status = path.stat()
    if not stat.S_ISREG(status.st_mode):
        raise FileNotFoundError(f"no object at {path}")
    return status.st_size
