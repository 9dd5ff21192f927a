"""The worker in this process against a real Postgres: outcomes, assets, events, retries,
timeouts, cancellation, fencing, ordering. Process-level behaviour is in test_worker_processes."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from job_handlers import read_runs
from worker_harness import await_for, enqueue, events, job, running_worker, status_is

Conn = psycopg.Connection[Any]


async def test_job_goes_queued_running_done_with_its_asset_and_events(
    conn: Conn, company_id: uuid.UUID, database_url: str, tmp_path: Path
) -> None:
    job_id = enqueue(conn, company_id, "echo", {"text": "hello"}, source_task_id="task-7")
    async with running_worker(database_url, tmp_path / "storage"):
        await await_for(status_is(conn, job_id, "done"))
    done = job(conn, job_id)
    assert done["attempts"] == 1 and done["error_message"] is None
    assert done["locked_by"] is None and done["lease_expires_at"] is None
    assert done["finished_at"] is not None and done["progress"] == {
        "fraction": 0.5,
        "message": "half way",
    }
    asset = conn.execute(
        "SELECT * FROM skiplock.assets WHERE id = %s", (done["result_asset_id"],)
    ).fetchone()
    assert asset is not None
    columns = [d.name for d in conn.execute("SELECT * FROM skiplock.assets LIMIT 0").description]
    asset = dict(zip(columns, asset, strict=True))
    stored = tmp_path / "storage" / asset["object_key"]
    assert stored.read_bytes() == b"hello"
    assert asset["sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert asset["byte_size"] == 5 and asset["content_type"] == "text/plain"
    assert asset["source_task_id"] == "task-7" and asset["company_id"] == company_id
    assert asset["original_filename"] == "echo.txt"
    assert asset["object_key"].startswith(f"{company_id}/generated/")
    assert [t for t, _ in events(conn, job_id)] == [
        "content_job.queued",
        "content_job.running",
        "content_job.progress",
        "content_job.done",
    ]
    assert events(conn, job_id)[-1][1] == {"status": "done", "assetId": str(asset["id"])}


async def test_handler_returning_none_is_done_without_asset(
    conn: Conn, company_id: uuid.UUID, database_url: str, tmp_path: Path
) -> None:
    job_id = enqueue(conn, company_id, "noop")
    async with running_worker(database_url, tmp_path / "storage"):
        await await_for(status_is(conn, job_id, "done"))
    assert job(conn, job_id)["result_asset_id"] is None
    assert conn.execute("SELECT count(*) FROM skiplock.assets").fetchone() == (0,)


async def test_exception_retries_with_backoff_until_done_on_third_attempt(
    conn: Conn, company_id: uuid.UUID, database_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    runs = tmp_path / "runs.txt"
    monkeypatch.setenv("SKIPLOCK_TEST_RUNS", str(runs))
    job_id = enqueue(conn, company_id, "flaky", {"succeed_on": 3})
    async with running_worker(database_url, tmp_path / "storage"):
        await await_for(
            lambda: job(conn, job_id)["attempts"] == 1 and job(conn, job_id)["status"] == "queued"
        )
        first_retry = job(conn, job_id)
        assert first_retry["error_message"] == "RuntimeError: flaky failure on attempt 1"
        delay = (first_retry["run_at"] - datetime.now(UTC)).total_seconds()
        assert 1.0 < delay <= 2.5  # 2 s x [1, 1.25] after attempt 1
        await await_for(status_is(conn, job_id, "done"), timeout=30)
    assert [attempt for _, attempt, _ in read_runs(runs)] == [1, 2, 3]
    queued = [p for t, p in events(conn, job_id) if t == "content_job.queued"][1:]
    assert [(p["reason"], p["attempt"]) for p in queued] == [("error", 1), ("error", 2)]
    assert job(conn, job_id)["error_message"] is None


async def test_permanent_error_fails_after_one_attempt(
    conn: Conn, company_id: uuid.UUID, database_url: str, tmp_path: Path
) -> None:
    job_id = enqueue(conn, company_id, "doomed", max_attempts=5)
    async with running_worker(database_url, tmp_path / "storage"):
        await await_for(status_is(conn, job_id, "failed"))
    failed = job(conn, job_id)
    assert failed["attempts"] == 1 and failed["error_message"] == "this input can never work"
    assert events(conn, job_id)[-1] == (
        "content_job.failed",
        {"status": "failed", "errorMessage": "this input can never work"},
    )


async def test_timeout_fails_the_attempt(
    conn: Conn, company_id: uuid.UUID, database_url: str, tmp_path: Path
) -> None:
    job_id = enqueue(conn, company_id, "sleep", {"seconds": 30}, timeout_seconds=1, max_attempts=1)
    started = time.monotonic()
    async with running_worker(database_url, tmp_path / "storage"):
        await await_for(status_is(conn, job_id, "failed"))
    assert time.monotonic() - started < 10
    assert job(conn, job_id)["error_message"].startswith("timed out after 1.0 s")


async def test_invalid_input_fails_without_running(
    conn: Conn, company_id: uuid.UUID, database_url: str, tmp_path: Path
) -> None:
    job_id = enqueue(conn, company_id, "diagram", {"source": "digraph {}", "format": "gif"})
    async with running_worker(database_url, tmp_path / "storage"):
        await await_for(status_is(conn, job_id, "failed"))
    assert job(conn, job_id)["error_message"].startswith("invalid input: input format:")


async def test_future_run_at_is_not_started_early_and_priority_wins(
    conn: Conn, company_id: uuid.UUID, database_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    runs = tmp_path / "runs.txt"
    monkeypatch.setenv("SKIPLOCK_TEST_RUNS", str(runs))
    later = enqueue(conn, company_id, "noop", run_at=datetime.now(UTC) + timedelta(seconds=2))
    low = enqueue(conn, company_id, "noop", priority=-5)
    high = enqueue(conn, company_id, "noop", priority=5)
    async with running_worker(database_url, tmp_path / "storage", concurrency=1):
        await await_for(lambda: job(conn, low)["status"] == "done")
        assert job(conn, later)["status"] == "queued"
        await await_for(status_is(conn, later, "done"), timeout=10)
    order = [uuid.UUID(job_id) for job_id, _, _ in read_runs(runs)]
    assert order == [high, low, later]
    assert job(conn, later)["started_at"] >= job(conn, later)["run_at"]


async def test_types_option_serves_only_those_types(
    conn: Conn, company_id: uuid.UUID, database_url: str, tmp_path: Path
) -> None:
    mine = enqueue(conn, company_id, "noop")
    other = enqueue(conn, company_id, "echo", {"text": "x"})
    async with running_worker(database_url, tmp_path / "storage", job_types=("noop",)):
        await await_for(status_is(conn, mine, "done"))
        await asyncio.sleep(0.5)
        assert job(conn, other)["status"] == "queued"


async def test_cancel_in_sql_interrupts_handler_within_a_second(
    conn: Conn, company_id: uuid.UUID, database_url: str, tmp_path: Path
) -> None:
    job_id = enqueue(conn, company_id, "sleep", {"seconds": 60})
    async with running_worker(database_url, tmp_path / "storage") as worker:
        await await_for(status_is(conn, job_id, "running"))
        await asyncio.sleep(0.2)
        conn.execute(
            "UPDATE skiplock.content_jobs SET status = 'canceled' WHERE id = %s", (job_id,)
        )
        canceled_at = time.monotonic()
        await await_for(lambda: not worker._held, timeout=5)
        assert time.monotonic() - canceled_at < 2.0  # SPEC: within one second (2x slack)
    final = job(conn, job_id)
    assert final["status"] == "canceled" and final["finished_at"] is not None
    assert [t for t, _ in events(conn, job_id)][-1] == "content_job.canceled"


async def test_progress_is_throttled_to_one_write_a_second_and_last_value_lands(
    conn: Conn, company_id: uuid.UUID, database_url: str, tmp_path: Path
) -> None:
    job_id = enqueue(conn, company_id, "sleep", {"seconds": 2.5, "tick": 0.01})
    async with running_worker(database_url, tmp_path / "storage"):
        await await_for(status_is(conn, job_id, "done"))
    progress = [p for t, p in events(conn, job_id) if t == "content_job.progress"]
    # ~250 calls over 2.5 s: at most one write a second, plus the pending one at completion.
    assert 2 <= len(progress) <= 4
    assert [t for t, _ in events(conn, job_id)][-2:] == ["content_job.progress", "content_job.done"]
    assert progress[-1]["progress"]["fraction"] > 0.9
