"""The local-disk backend: objects as files under SKIPLOCK_STORAGE_DIR.

Each put writes a temp file beside its final path, hashing on the way, and renames it into
place once complete, holding one write batch plus one chunk in memory whatever the size.
Files are created 0600 and the folders this backend makes 0700, whatever the umask allows:
a tenant's outputs are readable by the OS user skiplock runs as, and no one else on the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import secrets
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path, PurePosixPath
from typing import BinaryIO, TypeVar

from skiplock.storage.protocol import CHUNK_SIZE, AssetTooLarge, StoredObject, read_range

# Small chunks are gathered up to this much per thread hop: a hop costs ~64 us, hashing and
# writing 64 KiB ~45 us, so 200 MiB in 64 KiB chunks took 0.45 s unbatched, 0.33 s batched.
_WRITE_BATCH = 1 << 20

_T = TypeVar("_T")

FILE_MODE = 0o600
FOLDER_MODE = 0o700


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
            make_private_folders(self.final.parent)
            fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            self.file = os.fdopen(fd, "wb")
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


def make_private_folders(folder: Path) -> None:
    """folder and its missing parents, each FOLDER_MODE. (Path.mkdir(parents=True) would give
    the parents the umask's mode, typically 0755.) Existing folders are left as they are."""
    missing: list[Path] = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # a concurrent put made it first
            path.mkdir(mode=FOLDER_MODE)


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
        self,
        object_key: str,
        chunks: AsyncIterator[bytes],
        *,
        max_bytes: int,
        content_type: str = "application/octet-stream",  # a file keeps no metadata
        filename: str | None = None,
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
        return read_range(path, start, length, CHUNK_SIZE)

    async def size(self, object_key: str) -> int:
        return await asyncio.to_thread(_file_size, self._path(object_key))


def _file_size(path: Path) -> int:
    """Size of the regular file at path; a directory (a key prefix) is no object either."""
    status = path.stat()
    if not stat.S_ISREG(status.st_mode):
        raise FileNotFoundError(f"no object at {path}")
    return status.st_size
