"""Time-ordered job ids (sql/0010.time-ordered-job-ids.sql, skiplock/ids.py): version 7
uuids whose leading bits are the time they were made, so the index entries of jobs queued
together sit together. Every insert path of skiplock's own makes them; a row inserted by
hand keeps the column's default, a random one."""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from skiplock.ids import uuid7

Conn = psycopg.Connection[Any]


def unix_ms(value: uuid.UUID) -> int:
    return value.int >> 80


def time_bits(value: uuid.UUID) -> int:
    """The 48 bits of ms and the 12 of its fraction, without the version between them."""
    return ((value.int >> 80) << 12) | ((value.int >> 64) & 0xFFF)


def assert_version_7(ids: list[uuid.UUID], before_ms: int, after_ms: int) -> None:
    for value in ids:
        assert value.version == 7 and value.variant == uuid.RFC_4122, value
        assert before_ms <= unix_ms(value) <= after_ms, value
    stamps = [time_bits(value) for value in ids]
    assert stamps == sorted(stamps), "ids made one after another must not go back in time"
    assert len(set(ids)) == len(ids)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_python_ids_are_version_7_in_time_order() -> None:
    before = now_ms()
    ids = [uuid7() for _ in range(5000)]
    assert_version_7(ids, before, now_ms())
    assert len({value.int & ((1 << 62) - 1) for value in ids}) == len(ids)  # random tails


def test_sql_ids_are_version_7_in_time_order(conn: Conn) -> None:
    before = now_ms() - 1000  # the server's clock is this machine's; a second of slack
    rows = conn.execute(
        "SELECT skiplock.new_job_id() FROM generate_series(1, 2000) ORDER BY generate_series"
    ).fetchall()
    assert_version_7([r[0] for r in rows], before, now_ms() + 1000)


def test_enqueue_functions_make_time_ordered_ids_in_input_order(
    conn: Conn, company_id: uuid.UUID
) -> None:
    before = now_ms() - 1000
    one = conn.execute(
        "SELECT skiplock.enqueue_content_job(%s, 'echo', '{}')", (company_id,)
    ).fetchone()
    many = conn.execute(
        "SELECT skiplock.enqueue_content_jobs(%s, 'echo', %s::jsonb[])",
        (company_id, [Jsonb({"n": n}) for n in range(500)]),
    ).fetchall()
    assert one is not None
    ids = [one[0], *(r[0] for r in many)]
    assert_version_7(ids, before, now_ms() + 1000)
    inputs = dict(conn.execute("SELECT id, input FROM skiplock.content_jobs").fetchall())
    assert [inputs[i]["n"] for i in ids[1:]] == list(range(500))


def test_a_row_inserted_by_hand_keeps_the_random_default(conn: Conn, company_id: uuid.UUID) -> None:
    row = conn.execute(
        "INSERT INTO skiplock.content_jobs (company_id, job_type) VALUES (%s, 'echo') RETURNING id",
        (company_id,),
    ).fetchone()
    assert row is not None and row[0].version == 4  # SPEC §2: default gen_random_uuid()
