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
    assert asset["id"].version == 7  # time-ordered, as job ids (skiplock/ids.py)
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


async def test_a_handler_that_ignores_being_cut_short_is_left_behind_and_the_slot_freed(
    conn: Conn, company_id: uuid.UUID, database_url: str, tmp_path: Path
) -> None:
    timed_out = enqueue(conn, company_id, "stubborn", timeout_seconds=1, max_attempts=1)
    canceled = enqueue(conn, company_id, "stubborn", priority=-1)
    behind = enqueue(conn, company_id, "noop", priority=-2)
    async with running_worker(database_url, tmp_path / "storage", concurrency=1):
        # The timeout cuts it short; a second later the worker moves on without it.
        started = time.monotonic()
        await await_for(status_is(conn, timed_out, "failed"), timeout=10)
        assert time.monotonic() - started < 2 * (1 + 1) + 1  # timeout, then unwind (2x slack)
        assert job(conn, timed_out)["error_message"].startswith("timed out after 1.0 s")
        await await_for(status_is(conn, canceled, "running"), timeout=10)
        conn.execute(
            "UPDATE skiplock.content_jobs SET status = 'canceled' WHERE id = %s", (canceled,)
        )
        # Canceled: not waited for past the unwind second either; the next job runs.
        await await_for(status_is(conn, behind, "done"), timeout=10)
        assert job(conn, canceled)["status"] == "canceled"


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


async def test_over_limit_output_fails_with_no_file_and_no_row(
    conn: Conn, company_id: uuid.UUID, database_url: str, tmp_path: Path
) -> None:
    job_id = enqueue(conn, company_id, "echo", {"text": "x" * 2000})
    storage = tmp_path / "storage"
    async with running_worker(database_url, storage, max_bytes=1000):
        await await_for(status_is(conn, job_id, "failed"))
    failed = job(conn, job_id)
    assert failed["attempts"] == 1  # not retried
    assert "SKIPLOCK_GENERATED_ASSET_MAX_BYTES=1000" in failed["error_message"]
    assert [p for p in storage.rglob("*") if p.is_file()] == []
    assert conn.execute("SELECT count(*) FROM skiplock.assets").fetchone() == (0,)


async def test_a_worker_that_lost_its_job_cannot_complete_fail_or_release_it(
    conn: Conn, company_id: uuid.UUID, database_url: str, aconn: psycopg.AsyncConnection[Any]
) -> None:
    """Worker A's lease runs out, the job is rescued and claimed by B: every write A tries
    (done with an asset, failed, handed back, progress, renewal) changes nothing."""
    from psycopg_pool import AsyncConnectionPool

    from skiplock import store
    from skiplock.storage import StoredObject
    from skiplock.worker.completions import CompletionWriter, Outcome, StoredAsset
    from skiplock.worker.progress import ProgressWriter

    job_id = enqueue(conn, company_id, "noop")
    claim = dict(job_types=["noop"], limit=1, lease_seconds=30)
    [claimed_by_a] = await store.claim_jobs(aconn, worker_id="A", **claim)
    conn.execute(
        "UPDATE skiplock.content_jobs SET lease_expires_at = now() - interval '1 s' WHERE id = %s",
        (job_id,),
    )
    assert len(await store.rescue_expired_leases(aconn)) == 1
    [claimed_by_b] = await store.claim_jobs(aconn, worker_id="B", **claim)
    assert (claimed_by_a["attempts"], claimed_by_b["attempts"]) == (1, 2)
    before = job(conn, job_id)

    async with AsyncConnectionPool(database_url, kwargs={"autocommit": True}) as pool:
        writer = CompletionWriter(
            pool, "A", take_progress=lambda _: None, lease_lost=lambda _: False
        )
        writing = asyncio.create_task(writer.run())
        asset = StoredAsset(
            uuid.uuid4(), StoredObject("local", "k", 1, "0" * 64), "text/plain", "a"
        )
        attempts = [
            Outcome(job_id, 1, "done", asset=asset),
            Outcome(job_id, 1, "failed", error_message="A failed it"),
            Outcome(job_id, 1, "queued", reason="shutdown", refund=True),
            Outcome(job_id, 1, "queued", reason="error", run_at=datetime.now(UTC)),
        ]
        assert [await writer.write(outcome) for outcome in attempts] == [None] * 4
        writing.cancel()
        progress = ProgressWriter(pool, "A")
        progress.report(job_id, 1, {"fraction": 0.9})
        await progress._write(progress._due_now())
    held = await store.renew_leases(aconn, worker_id="A", held={job_id: 1}, lease_seconds=30)
    assert held == set()
    after = job(conn, job_id)
    assert after == before  # not even updated_at moved
    assert after["status"] == "running" and after["locked_by"] == "B" and after["attempts"] == 2
    assert conn.execute("SELECT count(*) FROM skiplock.assets").fetchone() == (0,)


async def test_diagram_renders_svg_and_png_for_real(
    conn: Conn, company_id: uuid.UUID, database_url: str, tmp_path: Path
) -> None:
    source = "digraph { render -> store -> done }"
    svg = enqueue(conn, company_id, "diagram", {"source": source})
    png = enqueue(conn, company_id, "diagram", {"source": source, "format": "png"})
    async with running_worker(database_url, tmp_path / "storage"):
        await await_for(lambda: status_is(conn, svg, "done")() and status_is(conn, png, "done")())

    def stored(job_id: uuid.UUID) -> tuple[bytes, str, str]:
        row = conn.execute(
            "SELECT object_key, content_type, original_filename FROM skiplock.assets WHERE id = %s",
            (job(conn, job_id)["result_asset_id"],),
        ).fetchone()
        assert row is not None
        return (tmp_path / "storage" / row[0]).read_bytes(), row[1], row[2]

    svg_bytes, svg_type, svg_name = stored(svg)
    assert b"<svg" in svg_bytes and b">store</text>" in svg_bytes
    assert (svg_type, svg_name) == ("image/svg+xml", "diagram.svg")
    png_bytes, png_type, _ = stored(png)
    assert png_bytes.startswith(b"\x89PNG\r\n\x1a\n") and png_type == "image/png"
    assert job(conn, svg)["progress"] == {"fraction": 1.0, "message": "rendered"}  # 100%


async def test_invalid_dot_fails_at_once_with_graphviz_message(
    conn: Conn, company_id: uuid.UUID, database_url: str, tmp_path: Path
) -> None:
    job_id = enqueue(conn, company_id, "diagram", {"source": "digraph { a -> }"})
    async with running_worker(database_url, tmp_path / "storage"):
        await await_for(status_is(conn, job_id, "failed"))
    failed = job(conn, job_id)
    assert failed["attempts"] == 1
    assert failed["error_message"].startswith("Graphviz could not render this DOT source: ")
    assert "syntax error in line 1" in failed["error_message"]
    assert "<stdin>" in failed["error_message"]  # not a temp path


async def test_missing_dot_fails_diagram_jobs_clearly_and_the_worker_still_runs(
    conn: Conn, company_id: uuid.UUID, database_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    diagram = enqueue(conn, company_id, "diagram", {"source": "digraph { a }"})
    other = enqueue(conn, company_id, "noop")
    async with running_worker(database_url, tmp_path / "storage"):
        await await_for(
            lambda: status_is(conn, diagram, "failed")() and status_is(conn, other, "done")()
        )
    message = job(conn, diagram)["error_message"]
    assert message.startswith("Graphviz `dot` is not installed on this worker")
    assert job(conn, diagram)["attempts"] == 1


async def test_pruning_removes_old_events_of_finished_jobs_only(
    conn: Conn, company_id: uuid.UUID, database_url: str
) -> None:
    from psycopg_pool import AsyncConnectionPool

    from skiplock.worker import maintenance

    finished = enqueue(conn, company_id, "noop")
    running = enqueue(conn, company_id, "noop")
    conn.execute("UPDATE skiplock.content_jobs SET status = 'done' WHERE id = %s", (finished,))
    conn.execute("UPDATE skiplock.content_jobs SET status = 'canceled' WHERE id = %s", (running,))
    conn.execute("UPDATE skiplock.content_jobs SET status = 'queued' WHERE id = %s", (running,))
    # 2,500 old events on the finished job (more than one 1,000-row batch), and old ones on
    # the job that is queued again.
    conn.execute(
        "INSERT INTO skiplock.content_job_events (xid, company_id, job_id, type, created_at) "
        "SELECT pg_current_xact_id(), %s, %s, 'content_job.progress', now() - interval '8 days' "
        "FROM generate_series(1, 2500)",
        (company_id, finished),
    )
    conn.execute(
        "UPDATE skiplock.content_job_events SET created_at = now() - interval '8 days' "
        "WHERE job_id = %s",
        (running,),
    )
    async with AsyncConnectionPool(database_url, kwargs={"autocommit": True}) as pool:
        assert await maintenance.prune_once(pool, retention_days=7) == 2500
    # The finished job keeps its recent events; the unfinished one keeps everything.
    assert [t for t, _ in events(conn, finished)] == ["content_job.queued", "content_job.done"]
    assert len(events(conn, running)) == 3


async def _claimed(
    aconn: psycopg.AsyncConnection[Any], conn: Conn, company_id: uuid.UUID, n: int
) -> list[uuid.UUID]:
    from skiplock import store

    ids = [enqueue(conn, company_id, "noop") for _ in range(n)]
    rows = await store.claim_jobs(
        aconn, worker_id="W", job_types=["noop"], limit=n, lease_seconds=30
    )
    assert {row["id"] for row in rows} == set(ids)
    return ids


async def test_a_batch_refused_for_its_data_is_written_row_by_row(
    conn: Conn, company_id: uuid.UUID, database_url: str, aconn: psycopg.AsyncConnection[Any]
) -> None:
    """Issue 13: one outcome Postgres refuses (here its progress value holds a NUL, which
    jsonb cannot store) fails its own job, saying why; the others in its batch are written."""
    from psycopg_pool import AsyncConnectionPool

    from skiplock.worker.completions import CompletionWriter, Outcome

    good, bad = await _claimed(aconn, conn, company_id, 2)
    poisoned = {bad: {"fraction": 0.5, "message": "\x00"}}
    async with AsyncConnectionPool(database_url, kwargs={"autocommit": True}) as pool:
        writer = CompletionWriter(pool, "W", take_progress=poisoned.get, lease_lost=lambda _: False)
        writing = asyncio.create_task(writer.run())
        written = await asyncio.gather(
            writer.write(Outcome(good, 1, "done")), writer.write(Outcome(bad, 1, "done"))
        )
        writing.cancel()
    assert [o.status if o else None for o in written] == ["done", "failed"]
    assert writer.batches == 1  # both went in one batch, refused as a whole
    assert job(conn, good)["status"] == "done"
    refused = job(conn, bad)
    assert refused["status"] == "failed"
    assert refused["error_message"].startswith(
        "the attempt's outcome could not be stored (UntranslatableCharacter: "
    )


async def test_the_completion_writer_survives_an_exception(
    conn: Conn, company_id: uuid.UUID, database_url: str, aconn: psycopg.AsyncConnection[Any]
) -> None:
    from psycopg_pool import AsyncConnectionPool

    from skiplock.worker.completions import CompletionWriter, Outcome

    first, second = await _claimed(aconn, conn, company_id, 2)

    def take_progress(job_id: uuid.UUID) -> None:
        if job_id == first:
            raise RuntimeError("a bug")

    async with AsyncConnectionPool(database_url, kwargs={"autocommit": True}) as pool:
        writer = CompletionWriter(
            pool, "W", take_progress=take_progress, lease_lost=lambda _: False
        )
        writing = asyncio.create_task(writer.run())
        assert await writer.write(Outcome(first, 1, "done")) is None  # left to its lease
        assert await writer.write(Outcome(second, 1, "done")) is not None
        assert not writing.done()
        writing.cancel()
    assert (job(conn, first)["status"], job(conn, second)["status"]) == ("running", "done")
