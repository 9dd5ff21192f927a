"""The orphan sweep's decisions (worker/uploads.py, find_orphan_uploads.sql) on a real
database and real files: an object is removed only once its asset row can no longer
commit and nobody can still be writing it."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from skiplock import db
from skiplock.settings import Settings
from skiplock.storage import bytes_chunks
from skiplock.storage.registry import StorageRegistry, open_registry
from skiplock.worker.uploads import Uploads
from worker_harness import enqueue

Conn = psycopg.Connection[Any]
ME, OTHER = "sweeper:1:aaaa", "other:2:bbbb"


def worker_row(conn: Conn, worker_id: str, seen_ago: str = "0 seconds") -> None:
    conn.execute(
        "INSERT INTO skiplock.workers (id, hostname, pid, job_types, concurrency, last_seen_at) "
        "VALUES (%s, 'h', 1, '{}', 1, now() - %s::interval)",
        (worker_id, seen_ago),
    )


def running_job(conn: Conn, company_id: uuid.UUID, worker_id: str) -> uuid.UUID:
    job_id = enqueue(conn, company_id, "noop")
    conn.execute(
        "UPDATE skiplock.content_jobs SET status = 'running', attempts = 1, locked_by = %s, "
        "started_at = now(), lease_expires_at = now() + interval '1 minute' WHERE id = %s",
        (worker_id, job_id),
    )
    return job_id


async def stored_upload(
    conn: Conn, storages: StorageRegistry, job_id: uuid.UUID, worker_id: str
) -> str:
    """An object in local storage, recorded as job_id's upload (attempt 1) by worker_id."""
    key = f"c/generated/2026/12/04/{uuid.uuid4()}-out.bin"
    await storages.default.put(key, bytes_chunks(b"orphan?"), max_bytes=100)
    conn.execute(
        "INSERT INTO skiplock.asset_uploads (provider, object_key, job_id, attempt, worker_id) "
        "VALUES ('local', %s, %s, 1, %s)",
        (key, job_id, worker_id),
    )
    return key


async def test_the_sweep_removes_only_what_can_never_commit(
    conn: Conn, company_id: uuid.UUID, database_url: str, tmp_path: Path
) -> None:
    storages = open_registry(Settings(database_url=database_url, storage_dir=tmp_path))
    pool: AsyncConnectionPool = await db.open_pool(database_url)
    try:
        worker_row(conn, ME)
        worker_row(conn, OTHER)
        worker_row(conn, "dead:3:cccc", seen_ago="10 minutes")
        uploads = Uploads(pool, ME, storages)

        # Its worker looks gone, but the job still runs under it: the lease decides.
        still_running = running_job(conn, company_id, "dead:3:cccc")
        live_other = enqueue(conn, company_id, "noop")  # its attempt is over (never ran)
        dead = enqueue(conn, company_id, "noop")
        mine_in_flight = enqueue(conn, company_id, "noop")
        mine_done_with = enqueue(conn, company_id, "noop")
        keys = {
            "running": await stored_upload(conn, storages, still_running, "dead:3:cccc"),
            "live other": await stored_upload(conn, storages, live_other, OTHER),
            "dead worker": await stored_upload(conn, storages, dead, "dead:3:cccc"),
            "gone worker": await stored_upload(conn, storages, dead, "gone:4:dddd"),
            "mine in flight": await stored_upload(conn, storages, mine_in_flight, ME),
            "mine": await stored_upload(conn, storages, mine_done_with, ME),
        }
        uploads._in_flight[mine_in_flight] = ("local", keys["mine in flight"])

        assert await uploads.sweep_once() == 3
        left = {p.name for p in tmp_path.rglob("*") if p.is_file()}
        kept = {name for name, key in keys.items() if key.rsplit("/", 1)[1] in left}
        # Still running: its completion may yet commit. Another live worker's: it may be
        # mid-upload after a cancel (it removes the object itself). Mine in flight: same.
        assert kept == {"running", "live other", "mine in flight"}
        recorded = {row[0] for row in conn.execute("SELECT object_key FROM asset_uploads")}
        assert recorded == {keys[name] for name in kept}

        # A backend this worker cannot reach: the record stays for one that can.
        conn.execute("UPDATE asset_uploads SET provider = 's3', worker_id = 'gone:5:eeee'")
        assert await uploads.sweep_once() == 0
        assert conn.execute("SELECT count(*) FROM asset_uploads").fetchone() == (3,)
    finally:
        await pool.close()
        await storages.aclose()
