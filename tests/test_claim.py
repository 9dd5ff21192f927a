"""Claiming, lease renewal and rescue, in SQL against a real Postgres (SPEC §3)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg

from skiplock import store

Conn = psycopg.Connection[Any]
AConn = psycopg.AsyncConnection[Any]


def add_jobs(conn: Conn, company_id: uuid.UUID, n: int, job_type: str = "t", **cols: Any) -> None:
    names = ", ".join(cols)
    values = ", ".join(f"%({c})s" for c in cols)
    extra_names, extra_values = (f", {names}", f", {values}") if cols else ("", "")
    conn.execute(
        f"INSERT INTO content_jobs (company_id, job_type{extra_names}) "
        f"SELECT %(company)s, %(type)s{extra_values} FROM generate_series(1, %(n)s)",
        {"company": company_id, "type": job_type, "n": n, **cols},
    )


async def claim(
    aconn: AConn, worker: str, limit: int, types: list[str] | None = None, lease: float = 30
) -> list[dict[str, Any]]:
    return await store.claim_jobs(
        aconn, worker_id=worker, job_types=types or ["t"], limit=limit, lease_seconds=lease
    )


async def test_claim_takes_higher_priority_first_then_older_run_at(
    conn: Conn, aconn: AConn, company_id: uuid.UUID
) -> None:
    add_jobs(conn, company_id, 1, priority=0, run_at="2026-01-01T00:00:00Z")
    add_jobs(conn, company_id, 1, priority=5, run_at="2026-01-02T00:00:00Z")
    add_jobs(conn, company_id, 1, priority=0, run_at="2025-12-31T00:00:00Z")
    claimed = [await claim(aconn, "w", 1) for _ in range(3)]
    assert [(c[0]["priority"], c[0]["run_at"].day) for c in claimed] == [(5, 2), (0, 31), (0, 1)]
    job = claimed[0][0]
    assert job["status"] == "running" and job["attempts"] == 1 and job["locked_by"] == "w"


async def test_claim_skips_future_jobs_and_other_types(
    conn: Conn, aconn: AConn, company_id: uuid.UUID
) -> None:
    conn.execute(
        "INSERT INTO content_jobs (company_id, job_type, run_at) "
        "VALUES (%s, 't', now() + interval '1 hour')",
        (company_id,),
    )
    add_jobs(conn, company_id, 2, job_type="other")
    assert await claim(aconn, "w", 10) == []
    assert len(await claim(aconn, "w", 10, types=["t", "other"])) == 2


async def test_concurrent_claimers_never_get_the_same_job(
    database_url: str, conn: Conn, company_id: uuid.UUID
) -> None:
    add_jobs(conn, company_id, 400)

    async def claimer(name: str) -> list[uuid.UUID]:
        got: list[uuid.UUID] = []
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
            while batch := await claim(c, name, 7):
                got.extend(j["id"] for j in batch)
        return got

    results = await asyncio.gather(*(claimer(f"w{i}") for i in range(4)))
    everything = [job for got in results for job in got]
    assert len(everything) == 400 and len(set(everything)) == 400


async def test_renewal_extends_only_jobs_still_held_at_their_attempt(
    conn: Conn, aconn: AConn, company_id: uuid.UUID
) -> None:
    add_jobs(conn, company_id, 3)
    jobs = await claim(aconn, "w1", 3, lease=5)
    held = {j["id"]: j["attempts"] for j in jobs}
    lost, canceled, kept = (j["id"] for j in jobs)
    # One job was rescued and claimed again by another worker, one canceled by hand.
    conn.execute("UPDATE content_jobs SET status = 'queued' WHERE id = %s", (lost,))
    conn.execute("UPDATE content_jobs SET status = 'canceled' WHERE id = %s", (canceled,))
    conn.execute("UPDATE content_jobs SET priority = 9 WHERE id = %s", (lost,))
    retaken = await claim(aconn, "w1", 1)  # same worker id, but a new attempt
    assert retaken[0]["id"] == lost and retaken[0]["attempts"] == 2

    still = await store.renew_leases(aconn, worker_id="w1", held=held, lease_seconds=60)
    assert still == {kept}
    row = conn.execute(
        "SELECT lease_expires_at > now() + interval '50 seconds' FROM content_jobs WHERE id = %s",
        (kept,),
    ).fetchone()
    assert row == (True,)
    assert (
        await store.renew_leases(aconn, worker_id="w2", held={kept: 1}, lease_seconds=60) == set()
    )


async def test_rescue_requeues_expired_leases_and_fails_when_out_of_attempts(
    conn: Conn, aconn: AConn, company_id: uuid.UUID
) -> None:
    add_jobs(conn, company_id, 3, max_attempts=1)
    add_jobs(conn, company_id, 2, max_attempts=3)
    jobs = await claim(aconn, "dead-worker", 5, lease=30)
    expired = [j["id"] for j in jobs[:4]]
    conn.execute(
        "UPDATE content_jobs SET lease_expires_at = now() - interval '1 second' WHERE id = ANY(%s)",
        (expired,),
    )

    rescued = await store.rescue_expired_leases(aconn)
    by_status = {r["id"]: r["status"] for r in rescued}
    assert set(by_status) == set(expired)
    rows = conn.execute(
        "SELECT id, status, attempts, max_attempts, error_message, locked_by FROM content_jobs"
    ).fetchall()
    for job_id, status, attempts, max_attempts, error, locked_by in rows:
        if job_id not in expired:
            assert status == "running" and locked_by == "dead-worker"
        elif max_attempts == 1:
            assert status == "failed" and attempts == 1 and locked_by is None
            assert "lease expired" in error and "dead-worker" in error
        else:
            assert status == "queued" and attempts == 1 and locked_by is None
    requeued = conn.execute(
        "SELECT payload FROM content_job_events WHERE type = 'content_job.queued' "
        "AND payload ? 'reason'"
    ).fetchall()
    assert requeued and all(
        p[0]["reason"] == "lease_expired" and p[0]["attempt"] == 1 for p in requeued
    )
    assert await store.rescue_expired_leases(aconn) == []


async def test_claim_skips_a_type_paused_for_every_company_until_it_is_resumed(
    conn: Conn, aconn: AConn, company_id: uuid.UUID
) -> None:
    add_jobs(conn, company_id, 2, job_type="t")
    add_jobs(conn, company_id, 1, job_type="other")
    conn.execute("INSERT INTO paused_job_types (job_type) VALUES ('t')")
    claimed = await claim(aconn, "w", 10, types=["t", "other"])
    assert [c["job_type"] for c in claimed] == ["other"]

    await aconn.execute("LISTEN content_jobs_queued")
    conn.execute("DELETE FROM paused_job_types WHERE job_type = 't'")
    rung = [n.payload async for n in aconn.notifies(timeout=2.0, stop_after=1)]
    assert rung == ["t"]  # resuming wakes idle workers of that type
    assert len(await claim(aconn, "w", 10, types=["t"])) == 2


async def test_claim_skips_a_type_paused_for_one_company_only(
    conn: Conn, aconn: AConn, company_id: uuid.UUID
) -> None:
    other = conn.execute("INSERT INTO companies (name) VALUES ('other') RETURNING id").fetchone()
    assert other is not None
    add_jobs(conn, company_id, 2)
    add_jobs(conn, other[0], 2)
    conn.execute(
        "INSERT INTO paused_job_types (job_type, company_id) VALUES ('t', %s)", (company_id,)
    )
    claimed = await claim(aconn, "w", 10)
    assert {c["company_id"] for c in claimed} == {other[0]} and len(claimed) == 2
    # A second pause of the same (type, company) is refused; the all-companies row is another.
    try:
        conn.execute(
            "INSERT INTO paused_job_types (job_type, company_id) VALUES ('t', %s)", (company_id,)
        )
        raise AssertionError("a duplicate pause was accepted")
    except psycopg.errors.UniqueViolation:
        pass
    conn.execute("INSERT INTO paused_job_types (job_type) VALUES ('t')")
