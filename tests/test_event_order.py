"""Event order (SPEC §2): read in (xid, id) order below the horizon, nothing is ever skipped.

Ids are drawn when a transaction writes, and transactions commit in another order. These
tests make that happen on purpose, and show that a plain `id > last` reader loses events
where the (xid, id) + horizon reader does not.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import psycopg
import pytest

from conftest import create_database, drop_database
from skiplock import events

Conn = psycopg.Connection[Any]


def insert_job(conn: Conn, company_id: uuid.UUID) -> uuid.UUID:
    row = conn.execute(
        "INSERT INTO skiplock.content_jobs (company_id, job_type) VALUES (%s, 'diagram') "
        "RETURNING id",
        (company_id,),
    ).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


class NaiveReader:
    """The tempting, wrong reader: resume after the largest id seen."""

    def __init__(self, conn: Conn, company_id: uuid.UUID) -> None:
        self.conn, self.company_id = conn, company_id
        self.last = 0
        self.seen: list[int] = []

    def poll(self) -> None:
        rows = self.conn.execute(
            "SELECT id FROM skiplock.content_job_events WHERE company_id = %s AND id > %s "
            "ORDER BY id",
            (self.company_id, self.last),
        ).fetchall()
        for (event_id,) in rows:
            self.seen.append(event_id)
            self.last = event_id


class OrderedReader:
    """skiplock's reader, resuming after the last position it read."""

    def __init__(self, aconn: psycopg.AsyncConnection[Any], company_id: uuid.UUID) -> None:
        self.aconn, self.company_id = aconn, company_id
        self.position = events.START
        self.seen: list[int] = []
        self.pending = False

    async def poll(self) -> None:
        batch = await events.read_company_events(
            self.aconn, self.company_id, self.position, limit=3
        )
        self.seen.extend(e.id for e in batch.events)
        self.position, self.pending = batch.position, batch.pending


async def test_out_of_order_commits_lose_nothing_while_id_reader_does(
    database_url: str, conn: Conn, aconn: psycopg.AsyncConnection[Any], company_id: uuid.UUID
) -> None:
    naive, ordered = NaiveReader(conn, company_id), OrderedReader(aconn, company_id)
    with psycopg.connect(database_url) as first, psycopg.connect(database_url) as second:
        insert_job(first, company_id)  # draws the smaller event id, commits last
        insert_job(second, company_id)
        second.commit()
        naive.poll()
        await ordered.poll()
        assert ordered.seen == [] and ordered.pending  # held back behind `first`
        first.commit()
    naive.poll()
    await ordered.poll()
    all_ids = [
        r[0] for r in conn.execute("SELECT id FROM content_job_events ORDER BY id").fetchall()
    ]
    assert sorted(ordered.seen) == all_ids
    assert len(naive.seen) < len(all_ids), "the id > last reader should have missed one"


async def test_many_writers_committing_in_random_order_are_read_exactly_once(
    database_url: str, conn: Conn, aconn: psycopg.AsyncConnection[Any], company_id: uuid.UUID
) -> None:
    rng = random.Random(7)
    ordered, naive = OrderedReader(aconn, company_id), NaiveReader(conn, company_id)
    writers = [psycopg.connect(database_url) for _ in range(6)]
    try:
        jobs = [insert_job(conn, company_id) for _ in range(6)]
        await ordered.poll()
        naive.poll()
        for _ in range(40):
            open_writers = rng.sample(writers, k=rng.randint(2, len(writers)))
            for writer in open_writers:
                # One job per writer: row-lock waits are the next test's subject, and in one
                # thread they would deadlock this loop.
                job = jobs[writers.index(writer)]
                with writer.cursor() as cur:
                    cur.execute("SELECT pg_current_xact_id()")
                    if rng.random() < 0.5:
                        insert_job(writer, company_id)
                    else:
                        cur.execute(
                            "UPDATE skiplock.content_jobs SET progress = jsonb_build_object("
                            "'fraction', random()) WHERE id = %s",
                            (job,),
                        )
            rng.shuffle(open_writers)
            for writer in open_writers:
                writer.commit()
                await ordered.poll()
                naive.poll()
        while True:  # drain what the small batches left
            before = len(ordered.seen)
            await ordered.poll()
            if len(ordered.seen) == before and not ordered.pending:
                break
    finally:
        for writer in writers:
            writer.close()
    all_ids = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM content_job_events WHERE company_id = %s ORDER BY id", (company_id,)
        ).fetchall()
    ]
    assert len(ordered.seen) == len(set(ordered.seen)), "an event was read twice"
    assert sorted(ordered.seen) == all_ids, "an event was skipped"
    assert len(set(naive.seen)) < len(all_ids)


async def test_transaction_that_waited_on_a_job_lock_sorts_after_what_it_waited_for(
    database_url: str, conn: Conn, aconn: psycopg.AsyncConnection[Any], company_id: uuid.UUID
) -> None:
    job_id = insert_job(conn, company_id)
    early = await psycopg.AsyncConnection.connect(database_url)
    late = await psycopg.AsyncConnection.connect(database_url)
    try:
        early_xid = await (await early.execute("SELECT pg_current_xact_id()::text")).fetchone()
        await late.execute("SELECT pg_current_xact_id()")
        await late.execute(
            "UPDATE skiplock.content_jobs SET status = 'canceled' WHERE id = %s", (job_id,)
        )
        # `early` took its xid first, then waits on the row lock `late` holds.
        blocked = asyncio.create_task(
            early.execute(
                "UPDATE skiplock.content_jobs SET status = 'queued' WHERE id = %s", (job_id,)
            )
        )
        await asyncio.sleep(0.2)
        assert not blocked.done()
        await late.commit()
        await blocked
        await early.commit()
    finally:
        await early.close()
        await late.close()
    batch = await events.read_job_events(aconn, job_id, events.START)
    assert [e.type for e in batch.events] == [
        "content_job.queued",
        "content_job.canceled",
        "content_job.queued",
    ]
    canceled, requeued = batch.events[1], batch.events[2]
    assert early_xid is not None and int(early_xid[0]) < canceled.xid
    assert requeued.xid == canceled.xid, "the waiting transaction's event was not raised"
    assert requeued.id > canceled.id


async def test_long_open_write_transaction_elsewhere_holds_events_until_it_ends(
    server_url: str, database_url: str, conn: Conn, company_id: uuid.UUID
) -> None:
    other_name = f"test_other_{uuid.uuid4().hex[:8]}"
    other_url = create_database(server_url, other_name)
    follower = events.follow_company_events(database_url, company_id)
    try:
        with psycopg.connect(other_url) as blocker:
            blocker.execute("CREATE TABLE t (x int)")
            blocker.execute("INSERT INTO t VALUES (1)")  # a write transaction, left open
            job_id = insert_job(conn, company_id)
            next_event = asyncio.ensure_future(anext(follower))
            done, _ = await asyncio.wait({next_event}, timeout=0.5)
            assert not done, "an event was delivered past an open transaction's horizon"
            blocker.rollback()
        # No further doorbell rings: the follower's 50 ms re-read must find it.
        event = await asyncio.wait_for(next_event, timeout=10)
        assert event.job_id == job_id and event.type == "content_job.queued"
    finally:
        await follower.aclose()
        drop_database(server_url, other_name)


@pytest.mark.parametrize("limit", [1, 1000])
async def test_reader_pages_through_a_backlog_in_order(
    conn: Conn, aconn: psycopg.AsyncConnection[Any], company_id: uuid.UUID, limit: int
) -> None:
    conn.execute(
        """INSERT INTO content_jobs (company_id, job_type)
                    SELECT %s, 'bulk' FROM generate_series(1, 50)""",
        (company_id,),
    )
    conn.execute("UPDATE content_jobs SET status = 'canceled'")
    position, seen = events.START, []
    while True:
        batch = await events.read_company_events(aconn, company_id, position, limit=limit)
        if not batch.events:
            break
        seen.extend(batch.events)
        position = batch.position
    assert len(seen) == 100
    assert [e.position for e in seen] == sorted(e.position for e in seen)
    # resuming after an event id goes through its position
    resumed = await events.resolve_position(aconn, seen[49].id, company_id)
    assert resumed == seen[49].position
    assert await events.resolve_position(aconn, 10**12, company_id) is None


async def test_other_companies_events_are_not_read(
    conn: Conn, aconn: psycopg.AsyncConnection[Any], company_id: uuid.UUID
) -> None:
    other = conn.execute("INSERT INTO companies (name) VALUES ('b') RETURNING id").fetchone()
    assert other is not None
    insert_job(conn, other[0])
    mine = insert_job(conn, company_id)
    batch = await events.read_company_events(aconn, company_id, events.START)
    assert [e.job_id for e in batch.events] == [mine]
    everything = await events.read_all_events(aconn, events.START)
    assert len(everything.events) == 2
