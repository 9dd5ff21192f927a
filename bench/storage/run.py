"""Upload and download throughput of one output on each storage backend (SPEC §6).

    .venv/bin/python bench/storage/run.py            # --mib 100 --repeat 3

For each repetition, backends in turn (interleaved, so a noisy neighbour hits them all
alike): `put` a file of random bytes through the backend as a worker does (file_chunks,
sha256 on the way), then read it back whole as `/content` does (`open`), timed apart.
Backends: `local` (a temp dir), `s3` (moto's server in a process of its own, on loopback:
moto is not S3, it keeps objects in its own Python process, so this measures skiplock's
client side and a loopback HTTP hop, not AWS), `postgres` (skiplock.asset_chunks in a
throwaway cluster with default settings: fsync and synchronous_commit on). For postgres it
also reports the WAL written by one upload, and the table's size after the object is
deleted and before VACUUM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cluster import free_port, fresh_database, server

from skiplock.storage import LocalDiskStorage, Storage, file_chunks
from skiplock.storage.config import S3Settings
from skiplock.storage.postgres import PostgresStorage
from skiplock.storage.s3 import S3Storage

MiB = 1 << 20
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}


@contextmanager
def moto() -> Iterator[str]:
    """moto's S3 server in its own process, with a bucket `bench`; its endpoint."""
    port = free_port()
    moto_server = str(Path(sys.executable).with_name("moto_server"))
    process = subprocess.Popen(  # noqa: S603 (our venv's moto_server, fixed arguments)
        [moto_server, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                client.create_bucket(Bucket="bench")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield endpoint
    finally:
        process.terminate()
        process.wait(10)


async def timed(action: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await action()
    return time.perf_counter() - started


async def round_trip(storage: Storage, path: Path, size: int) -> tuple[float, float]:
    """Seconds to put the file, and to read it back whole."""
    key = f"bench/generated/{uuid.uuid4()}-out.bin"
    put = await timed(lambda: storage.put(key, file_chunks(path), max_bytes=size))

    async def read() -> None:
        got = 0
        async for chunk in await storage.open(key):
            got += len(chunk)
        if got != size:
            raise RuntimeError(f"read {got} bytes of {size}")

    get = await timed(read)
    await storage.delete(key)
    return put, get


async def wal_and_bloat(
    url: str, storage: PostgresStorage, path: Path, size: int
) -> tuple[int, int]:
    """WAL bytes written by one upload; asset_chunks' size once it is deleted (no VACUUM)."""
    key = f"bench/generated/{uuid.uuid4()}-wal.bin"
    with psycopg.connect(url, autocommit=True) as conn:
        start = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]
        await storage.put(key, file_chunks(path), max_bytes=size)
        wal = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)::bigint", (start,)
        ).fetchone()[0]  # type: ignore[index]
        await storage.delete(key)
        left = conn.execute("SELECT pg_total_relation_size('skiplock.asset_chunks')").fetchone()[0]  # type: ignore[index]
    return int(wal), int(left)


async def measure(
    backends: dict[str, Storage], path: Path, size: int, repeat: int
) -> dict[str, tuple[list[float], list[float]]]:
    """MiB/s of each put and read, per backend, repetitions interleaved."""
    mib = size / MiB
    results: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in backends}
    for _ in range(repeat):
        for name, storage in backends.items():
            put, get = await round_trip(storage, path, size)
            results[name][0].append(mib / put)
            results[name][1].append(mib / get)
    return results


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} [{min(values):,.0f}-{max(values):,.0f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=100, help="output size (default 100)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (default 3)")
    args = parser.parse_args()
    size = args.mib * MiB
    os.environ.update(CREDENTIALS)
    with tempfile.TemporaryDirectory(prefix="skiplock-bench-storage-") as scratch:
        path = Path(scratch) / "output.bin"
        with path.open("wb") as out:
            for _ in range(args.mib):
                out.write(os.urandom(MiB))
        with server() as server_url, fresh_database(server_url) as url, moto() as endpoint:
            results, wal, left = asyncio.run(
                run_all(url, endpoint, Path(scratch), path, size, args.repeat)
            )
    print(f"{args.mib} MiB output, {args.repeat} repetitions, median [min-max] MiB/s")
    print("| backend | upload (put) | download (open, read whole) |")
    print("|---|---|---|")
    for name, (puts, gets) in results.items():
        print(f"| {name} | {summary(puts)} | {summary(gets)} |")
    print(
        f"postgres: one upload wrote {wal / MiB:,.0f} MiB of WAL; asset_chunks is "
        f"{left / MiB:,.0f} MiB after deleting it, until VACUUM"
    )


async def run_all(
    url: str, endpoint: str, scratch: Path, path: Path, size: int, repeat: int
) -> tuple[dict[str, tuple[list[float], list[float]]], int, int]:
    postgres = PostgresStorage(url)
    s3 = S3Settings(
        bucket="bench",
        endpoint=endpoint,
        access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    backends: dict[str, Storage] = {
        "local": LocalDiskStorage(scratch / "storage"),
        "s3": S3Storage(s3),
        "postgres": postgres,
    }
    try:
        results = await measure(backends, path, size, repeat)
        wal, left = await wal_and_bloat(url, postgres, path, size)
    finally:
        for storage in backends.values():
            await _close(storage)
    return results, wal, left


async def _close(storage: Storage) -> None:
    close = getattr(storage, "aclose", None)
    if close is not None:
        await close()


if __name__ == "__main__":
    main()
