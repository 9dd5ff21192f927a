"""Claiming, lease renewal and rescue, in SQL against a real Postgres (SPEC §3)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row

from plans import index_rows_read, nested_plans
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
    rows = await store.claim_jobs(
        aconn, worker_id=worker, job_types=types or ["t"], limit=limit, lease_seconds=lease
    )
    return await whole_jobs(aconn, rows)


async def whole_jobs(aconn: AConn, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The claimed jobs' whole rows as they are now, in claim order (a claim returns only
    what a worker needs)."""
    ids = [row["id"] for row in rows]
    async with aconn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM skiplock.content_jobs WHERE id = ANY(%s)", (ids,))
        by_id = {row["id"]: row for row in await cur.fetchall()}
    return [by_id[job_id] for job_id in ids]


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


# ------------------------------------------------------------------------------------------
# Companies take turns (SPEC §3)
# ------------------------------------------------------------------------------------------


def new_company(conn: Conn, name: str) -> uuid.UUID:
    row = conn.execute("INSERT INTO companies (name) VALUES (%s) RETURNING id", (name,)).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


class Claimer:
    """Claims as a worker does: each claim goes on after the company the last one ended on."""

    def __init__(self, aconn: AConn, name: str = "w", types: list[str] | None = None) -> None:
        self.aconn, self.name, self.types = aconn, name, types or ["t"]
        self.after: uuid.UUID | None = None

    async def claim(self, limit: int) -> list[dict[str, Any]]:
        rows = await store.claim_jobs(
            self.aconn,
            worker_id=self.name,
            job_types=self.types,
            limit=limit,
            lease_seconds=30,
            after=self.after,
        )
        if rows:
            self.after = rows[-1]["company_id"]
        return await whole_jobs(self.aconn, rows)


def per_company(rows: list[dict[str, Any]]) -> dict[uuid.UUID, int]:
    counts: dict[uuid.UUID, int] = {}
    for row in rows:
        counts[row["company_id"]] = counts.get(row["company_id"], 0) + 1
    return counts


async def test_two_companies_with_equal_backlogs_share_every_claim_evenly(
    conn: Conn, aconn: AConn, company_id: uuid.UUID
) -> None:
    other = new_company(conn, "other")
    add_jobs(conn, company_id, 60)
    add_jobs(conn, other, 60)
    claimer = Claimer(aconn)
    for _ in range(5):
        assert sorted(per_company(await claimer.claim(10)).values()) == [5, 5]
    # An odd number of slots: the odd job goes to each company in turn.
    firsts = [per_company(await claimer.claim(3)) for _ in range(4)]
    assert sum(c.get(company_id, 0) for c in firsts) == 6
    assert sum(c.get(other, 0) for c in firsts) == 6


async def test_three_companies_take_turns_one_job_each_per_turn(
    conn: Conn, aconn: AConn, company_id: uuid.UUID
) -> None:
    companies = [company_id, new_company(conn, "b"), new_company(conn, "c")]
    for company in companies:
        add_jobs(conn, company, 30)
    claimer = Claimer(aconn)
    # Fewer slots than companies: the turn goes round across claims, one job each.
    taken = [row["company_id"] for _ in range(6) for row in await claimer.claim(2)]
    assert [taken.count(c) for c in companies] == [4, 4, 4]
    assert all(taken[i] != taken[i + 1] for i in range(len(taken) - 1))
    # More slots than companies: a turn each, as many turns as fit, in turn order.
    rows = await claimer.claim(9)
    assert sorted(per_company(rows).values()) == [3, 3, 3]
    order = [row["company_id"] for row in rows]
    assert order[:3] == order[3:6] == order[6:9] and len(set(order[:3])) == 3


async def test_a_lone_job_is_claimed_by_the_next_claim_while_another_company_has_10000(
    conn: Conn, aconn: AConn, company_id: uuid.UUID
) -> None:
    add_jobs(conn, company_id, 10_000)
    claimer = Claimer(aconn)
    for _ in range(3):
        assert per_company(await claimer.claim(4)) == {company_id: 4}
    lone_company = new_company(conn, "lone")
    add_jobs(conn, lone_company, 1)
    # One free slot: the turn after the busy company's is the other's.
    [row] = await claimer.claim(1)
    assert row["company_id"] == lone_company
    assert per_company(await claimer.claim(4)) == {company_id: 4}
    # With more free slots the lone job is in the very next claim, beside the backlog's.
    add_jobs(conn, lone_company, 1)
    rows = await claimer.claim(8)
    assert per_company(rows) == {company_id: 7, lone_company: 1}


async def test_priority_orders_jobs_only_within_a_company(
    conn: Conn, aconn: AConn, company_id: uuid.UUID
) -> None:
    other = new_company(conn, "other")
    add_jobs(conn, company_id, 3, priority=0)
    add_jobs(conn, company_id, 3, priority=100)
    add_jobs(conn, other, 6, priority=-5)
    claimer = Claimer(aconn)
    rows = await claimer.claim(6)
    assert per_company(rows) == {company_id: 3, other: 3}  # priority never jumps the turn
    assert [r["priority"] for r in rows if r["company_id"] == company_id] == [100, 100, 100]
    rows = await claimer.claim(6)
    assert [r["priority"] for r in rows if r["company_id"] == company_id] == [0, 0, 0]


async def test_a_companys_jobs_of_several_types_go_in_its_own_priority_order(
    conn: Conn, aconn: AConn, company_id: uuid.UUID
) -> None:
    add_jobs(conn, company_id, 1, job_type="b", priority=0)
    add_jobs(conn, company_id, 1, job_type="b", priority=-1)
    add_jobs(conn, company_id, 1, job_type="a", priority=-2)  # its type sorts first
    claimer = Claimer(aconn, types=["a", "b"])
    taken = [(r["job_type"], r["priority"]) for _ in range(3) for r in await claimer.claim(1)]
    assert taken == [("b", 0), ("b", -1), ("a", -2)]


async def test_jobs_not_due_paused_or_of_other_types_leave_the_turn_to_others(
    conn: Conn, aconn: AConn, company_id: uuid.UUID
) -> None:
    scheduled, paused, elsewhere, ready = (new_company(conn, n) for n in "spod")
    add_jobs(conn, scheduled, 5, run_at="2999-01-01T00:00:00Z")
    add_jobs(conn, paused, 5)
    add_jobs(conn, elsewhere, 5, job_type="other")
    add_jobs(conn, ready, 5)
    conn.execute("INSERT INTO paused_job_types (job_type, company_id) VALUES ('t', %s)", (paused,))
    rows = await Claimer(aconn).claim(4)
    assert per_company(rows) == {ready: 4}


async def test_a_claim_of_a_paused_backlog_reads_one_entry_of_it_not_all(
    conn: Conn, aconn: AConn, company_id: uuid.UUID
) -> None:
    """A company's paused type with 10,000 queued jobs costs a claim one index probe."""
    other = new_company(conn, "other")
    add_jobs(conn, company_id, 10_000)
    add_jobs(conn, other, 2)
    conn.execute(
        "INSERT INTO paused_job_types (job_type, company_id) VALUES ('t', %s)", (company_id,)
    )
    conn.execute("ANALYZE content_jobs")
    params = {"worker_id": "w", "job_types": ["t"], "limit": 10, "lease_seconds": 30}
    plans = nested_plans(conn, "claim_jobs", {**params, "after": None}, analyze=True)
    claimed = conn.execute("SELECT count(*) FROM content_jobs WHERE status = 'running'")
    assert claimed.fetchone() == (2,)
    read = index_rows_read(plans, "content_jobs_due_idx") + index_rows_read(
        plans, "content_jobs_claim_idx"
    )
    assert read < 50, f"the claim read {read} index entries"


# ------------------------------------------------------------------------------------------
# max_running (SPEC §3)
# ------------------------------------------------------------------------------------------


async def test_max_running_holds_however_many_claimers_race(
    database_url: str, conn: Conn, company_id: uuid.UUID
) -> None:
    other = new_company(conn, "other")
    conn.execute("UPDATE companies SET max_running = 3 WHERE id = %s", (company_id,))
    add_jobs(conn, company_id, 100)
    add_jobs(conn, other, 100)

    async def claimer(name: str) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
            worker = Claimer(c, name)
            while batch := await worker.claim(5):
                got.extend(batch)
        return got

    results = await asyncio.gather(*(claimer(f"w{i}") for i in range(6)))
    everything = [row for rows in results for row in rows]
    assert per_company(everything) == {company_id: 3, other: 100}
    running = conn.execute(
        "SELECT count(*) FROM content_jobs WHERE company_id = %s AND status = 'running'",
        (company_id,),
    )
    assert running.fetchone() == (3,)

    # One finishes: one place; max_running none: every remaining job.
    done = everything[[r["company_id"] for r in everything].index(company_id)]["id"]
    conn.execute("UPDATE content_jobs SET status = 'done' WHERE id = %s", (done,))
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
        assert per_company(await Claimer(c, "x").claim(10)) == {company_id: 1}
        conn.execute("UPDATE companies SET max_running = NULL WHERE id = %s", (company_id,))
        assert len(await Claimer(c, "y").claim(200)) == 96


async def test_a_freed_place_under_max_running_rings_the_doorbell(
    database_url: str, conn: Conn, aconn: AConn, company_id: uuid.UUID
) -> None:
    conn.execute("UPDATE companies SET max_running = 1 WHERE id = %s", (company_id,))
    add_jobs(conn, company_id, 2)
    [held] = await Claimer(aconn).claim(5)
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN content_jobs_queued")
        conn.execute("UPDATE content_jobs SET status = 'canceled' WHERE id = %s", (held["id"],))
        assert [n.payload for n in listener.notifies(timeout=1.0, stop_after=1)] == ["t"]
        # Lifting the limit rings too: the waiting job can start.
        conn.execute("UPDATE companies SET max_running = 5 WHERE id = %s", (company_id,))
        assert [n.payload for n in listener.notifies(timeout=1.0, stop_after=1)] == ["t"]
