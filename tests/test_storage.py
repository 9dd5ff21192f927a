"""LocalDiskStorage on real files: whole objects or nothing, bounded memory, safe keys."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path, PurePosixPath

import pytest

from skiplock.storage import (
    AssetTooLarge,
    LocalDiskStorage,
    Storage,
    StoredObject,
    bytes_chunks,
    file_chunks,
    object_key_for,
)
from skiplock.storage.local import _in_thread

MiB = 1 << 20
COMPANY = uuid.UUID("0b7c5a52-6a0e-4a4e-9d3c-5a1f6e2b9c10")
OBJECT = uuid.UUID("9f1d2e3c-4b5a-4697-8877-665544332211")
KEY = f"{COMPANY}/generated/2024/03/05/{OBJECT}-out.bin"


def files_under(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if not path.is_dir())


async def read_all(storage: Storage, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in await storage.open(key, start, end)])


def pattern(size: int) -> bytes:
    """Bytes that differ from offset to offset, so a misplaced slice shows."""
    return (bytes(range(251)) * (size // 251 + 1))[:size]


async def test_put_from_bytes_stores_content_hash_and_size(tmp_path: Path) -> None:
    storage: Storage = LocalDiskStorage(tmp_path)
    data = pattern(3 * MiB + 17)

    stored = await storage.put(KEY, bytes_chunks(data), max_bytes=10 * MiB)

    assert stored == StoredObject("local", KEY, len(data), hashlib.sha256(data).hexdigest())
    assert (tmp_path / KEY).read_bytes() == data
    assert await read_all(storage, KEY) == data
    assert files_under(tmp_path) == [tmp_path / KEY]  # no temp file beside it


async def test_put_from_file_stores_content_hash_and_size(tmp_path: Path) -> None:
    source = tmp_path / "source.svg"
    source.write_bytes(pattern(2 * MiB + 5))
    storage = LocalDiskStorage(tmp_path / "assets")

    stored = await storage.put(KEY, file_chunks(source, chunk_size=300_000), max_bytes=3 * MiB)

    assert stored.byte_size == source.stat().st_size
    assert stored.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert (tmp_path / "assets" / KEY).read_bytes() == source.read_bytes()
    assert files_under(tmp_path / "assets") == [tmp_path / "assets" / KEY]


async def test_put_of_nothing_stores_an_empty_object(tmp_path: Path) -> None:
    storage = LocalDiskStorage(tmp_path)

    stored = await storage.put(KEY, bytes_chunks(b""), max_bytes=0)

    assert stored.byte_size == 0
    assert stored.sha256 == hashlib.sha256(b"").hexdigest()
    assert await storage.size(KEY) == 0


async def test_put_exactly_at_the_limit_succeeds(tmp_path: Path) -> None:
    stored = await LocalDiskStorage(tmp_path).put(KEY, bytes_chunks(b"x" * 1000), max_bytes=1000)
    assert stored.byte_size == 1000


async def test_output_over_the_limit_leaves_nothing(tmp_path: Path) -> None:
    storage = LocalDiskStorage(tmp_path)

    with pytest.raises(AssetTooLarge) as raised:
        await storage.put(KEY, bytes_chunks(b"x" * 1001), max_bytes=1000)

    assert str(raised.value) == (
        "output is larger than SKIPLOCK_GENERATED_ASSET_MAX_BYTES=1000 bytes (0.0 MiB)"
    )
    assert files_under(tmp_path) == []


async def test_limit_passed_mid_stream_stops_reading_and_leaves_nothing(tmp_path: Path) -> None:
    consumed = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal consumed
        for _ in range(100):
            consumed += 1
            yield b"y" * 700_000  # batches reach the disk before the limit is passed

    with pytest.raises(AssetTooLarge, match=r"MAX_BYTES=5242880 bytes \(5\.0 MiB\)"):
        await LocalDiskStorage(tmp_path).put(KEY, chunks(), max_bytes=5 * MiB)

    assert consumed == 8  # 7 chunks fit in 5 MiB; the 8th passes it and nothing more is read
    assert files_under(tmp_path) == []


async def test_chunk_iterator_failing_mid_stream_leaves_nothing(tmp_path: Path) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"z" * MiB
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError, match="renderer crashed"):
        await LocalDiskStorage(tmp_path).put(KEY, chunks(), max_bytes=100 * MiB)

    assert files_under(tmp_path) == []


async def test_cancelled_put_leaves_nothing(tmp_path: Path) -> None:
    written = asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"c" * MiB
        written.set()
        await asyncio.Event().wait()  # a producer that stalls until the put is cancelled
        yield b"never"

    put = asyncio.create_task(LocalDiskStorage(tmp_path).put(KEY, chunks(), max_bytes=10 * MiB))
    await written.wait()
    assert files_under(tmp_path) != []  # the temp file exists while the put runs
    put.cancel()

    with pytest.raises(asyncio.CancelledError):
        await put
    assert files_under(tmp_path) == []


async def test_cancellation_waits_for_the_thread_in_flight() -> None:
    # A thread cannot be stopped: put's cleanup must run after an in-flight write or rename.
    started, release = threading.Event(), threading.Event()

    def write() -> None:
        started.set()
        release.wait(timeout=10)

    hop = asyncio.create_task(_in_thread(write))
    await asyncio.to_thread(started.wait, 10)
    hop.cancel()
    for _ in range(5):
        await asyncio.sleep(0)
    assert not hop.done()  # still waiting for the thread, not yet cleaning up
    release.set()

    with pytest.raises(asyncio.CancelledError):
        await hop


async def test_open_returns_the_requested_byte_range(tmp_path: Path) -> None:
    storage = LocalDiskStorage(tmp_path)
    data = pattern(3 * MiB)
    await storage.put(KEY, bytes_chunks(data), max_bytes=len(data))

    assert await read_all(storage, KEY, 10, 20) == data[10:21]  # end is inclusive
    assert await read_all(storage, KEY, 5) == data[5:]
    assert await read_all(storage, KEY, MiB - 3, 2 * MiB + 3) == data[MiB - 3 : 2 * MiB + 4]
    assert await read_all(storage, KEY, 0, 0) == data[:1]
    assert await read_all(storage, KEY, len(data) - 2, len(data) + 100) == data[-2:]
    assert await storage.size(KEY) == len(data)
    chunks = [chunk async for chunk in await storage.open(KEY)]
    assert len(chunks) == 3  # streamed a chunk at a time, not read whole


async def test_open_rejects_a_backwards_range(tmp_path: Path) -> None:
    storage = LocalDiskStorage(tmp_path)
    await storage.put(KEY, bytes_chunks(b"abc"), max_bytes=3)

    with pytest.raises(ValueError, match="byte range 2-1"):
        await storage.open(KEY, 2, 1)


async def test_missing_object_raises_file_not_found(tmp_path: Path) -> None:
    storage = LocalDiskStorage(tmp_path)
    await storage.put(KEY, bytes_chunks(b"abc"), max_bytes=3)

    for key in (KEY + ".missing", str(COMPANY)):  # a key prefix is a directory, not an object
        with pytest.raises(FileNotFoundError):
            await storage.open(key)
        with pytest.raises(FileNotFoundError):
            await storage.size(key)


async def test_delete_is_idempotent(tmp_path: Path) -> None:
    storage = LocalDiskStorage(tmp_path)
    await storage.put(KEY, bytes_chunks(b"abc"), max_bytes=3)

    await storage.delete(KEY)
    await storage.delete(KEY)

    assert files_under(tmp_path) == []
    with pytest.raises(FileNotFoundError):
        await storage.size(KEY)


def test_object_key_has_company_date_uuid_and_filename() -> None:
    now = datetime(2024, 3, 5, 23, 30, tzinfo=UTC)

    key = object_key_for(COMPANY, "diagram.svg", now=now, object_id=OBJECT)

    assert key == f"{COMPANY}/generated/2024/03/05/{OBJECT}-diagram.svg"


def test_object_key_is_dated_in_utc() -> None:
    tokyo = datetime(2024, 3, 6, 8, 30, tzinfo=timezone(timedelta(hours=9)))

    key = object_key_for(COMPANY, "a.png", now=tokyo, object_id=OBJECT)

    assert key.startswith(f"{COMPANY}/generated/2024/03/05/")


def test_object_keys_are_unique_without_an_object_id() -> None:
    now = datetime(2024, 3, 5, tzinfo=UTC)
    assert object_key_for(COMPANY, "a", now=now) != object_key_for(COMPANY, "a", now=now)


@pytest.mark.parametrize(
    ("filename", "safe"),
    [
        ("../../etc/passwd", "_.._etc_passwd"),
        ("a b/c?.svg", "a_b_c_.svg"),
        ("", "output"),
        ("...", "output"),
        (".hidden", "hidden"),
        ("résumé.pdf", "r_sum_.pdf"),
        ("x" * 500 + ".svg", "x" * 96 + ".svg"),
        ("y" * 500, "y" * 100),
    ],
)
def test_object_key_filename_is_made_safe(filename: str, safe: str) -> None:
    now = datetime(2024, 3, 5, tzinfo=UTC)

    key = object_key_for(COMPANY, filename, now=now, object_id=OBJECT)

    assert key == f"{COMPANY}/generated/2024/03/05/{OBJECT}-{safe}"


@pytest.mark.parametrize("key", ["../outside", "/etc/passwd", "a/../../outside", "a/..", ""])
async def test_keys_escaping_the_root_are_refused(tmp_path: Path, key: str) -> None:
    storage = LocalDiskStorage(tmp_path / "root")

    with pytest.raises(ValueError, match="escapes the storage root"):
        await storage.put(key, bytes_chunks(b"evil"), max_bytes=10)
    with pytest.raises(ValueError, match="escapes the storage root"):
        await storage.open(key)
    with pytest.raises(ValueError, match="escapes the storage root"):
        await storage.delete(key)

    assert files_under(tmp_path) == []


# Runs in its own process so VmHWM (peak RSS, which cannot be reset) covers only this put.
_PUT_BIG_FILE = """
import asyncio, json, sys
from pathlib import Path
from skiplock.storage import LocalDiskStorage, file_chunks

def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")

source, root, key = sys.argv[1:4]
before = peak_rss()
stored = asyncio.run(
    LocalDiskStorage(Path(root)).put(key, file_chunks(Path(source)), max_bytes=1 << 30)
)
print(json.dumps({"before": before, "after": peak_rss(), "sha256": stored.sha256,
                  "byte_size": stored.byte_size}))
"""


@pytest.mark.slow
def test_storing_a_200_mib_file_keeps_memory_bounded(tmp_path: Path) -> None:
    size = 200 * MiB
    source = tmp_path / "big.bin"
    with source.open("wb") as file:
        file.truncate(size)  # sparse: 200 MiB of zeros at no disk cost
    expected = hashlib.sha256()
    for _ in range(size // MiB):
        expected.update(bytes(MiB))

    result = subprocess.run(
        [sys.executable, "-c", _PUT_BIG_FILE, str(source), str(tmp_path / "root"), KEY],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    measured = json.loads(result.stdout)
    assert measured["byte_size"] == size
    assert measured["sha256"] == expected.hexdigest()
    assert (tmp_path / "root" / KEY).stat().st_size == size
    assert measured["after"] < 100 * MiB, measured
    print(f"peak RSS {measured['before'] / MiB:.1f} -> {measured['after'] / MiB:.1f} MiB")


async def test_outputs_are_0600_in_0700_folders_whatever_the_umask(tmp_path: Path) -> None:
    """Issue 13: another OS user on the worker's host reads no tenant's output."""
    root = tmp_path / "storage"  # made by the backend itself, like a fresh SKIPLOCK_STORAGE_DIR
    previous = os.umask(0o022)  # the usual umask, which gave 0644 files and 0755 folders
    try:
        await LocalDiskStorage(root).put(KEY, bytes_chunks(b"secret"), max_bytes=MiB)
    finally:
        os.umask(previous)
    path = root / KEY
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    parts = PurePosixPath(KEY).parts
    folders = [root.joinpath(*parts[:n]) for n in range(len(parts))]  # root to the file's own
    assert {folder: oct(stat.S_IMODE(folder.stat().st_mode)) for folder in folders} == {
        folder: oct(0o700) for folder in folders
    }
