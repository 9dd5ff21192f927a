"""Query plans for tests: EXPLAIN cannot see inside a function, auto_explain can."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from skiplock import store

Conn = psycopg.Connection[Any]


def nested_plans(
    conn: Conn, name: str, params: dict[str, Any], *, analyze: bool = False
) -> list[Any]:
    """The plans of the statements a named query runs inside its function (claim_jobs in
    claim_content_jobs(), finish_jobs in finish_content_jobs()), as auto_explain reports
    them (with the rows each node read, when analyze). Skips the test when the role may not
    LOAD auto_explain (a DATABASE_URL without superuser)."""
    try:
        conn.execute("LOAD 'auto_explain'")
    except psycopg.errors.InsufficientPrivilege:
        pytest.skip("LOAD 'auto_explain' needs a superuser")
    for setting in (
        "auto_explain.log_min_duration = 0",
        "auto_explain.log_nested_statements = on",
        "auto_explain.log_format = json",
        f"auto_explain.log_analyze = {'on' if analyze else 'off'}",
        "auto_explain.log_timing = off",
        "auto_explain.log_level = notice",
        "client_min_messages = notice",
    ):
        conn.execute(f"SET {setting}")
    messages: list[str] = []

    def keep(diag: psycopg.errors.Diagnostic) -> None:
        messages.append(diag.message_primary or "")

    conn.add_notice_handler(keep)
    try:
        conn.execute(store.query(name), params).fetchall()
    finally:
        conn.remove_notice_handler(keep)
        conn.execute("SET auto_explain.log_min_duration = -1")
        conn.execute("SET client_min_messages = warning")
    plans = [json.loads(m.split("plan:", 1)[1]) for m in messages if "plan:" in m]
    inner = [p for p in plans if "content_jobs(" not in p["Query Text"]]
    assert inner, f"auto_explain reported no plan inside {name}"
    return inner


def nodes(plan: Any) -> list[dict[str, Any]]:
    """Every plan node of an auto_explain / EXPLAIN (FORMAT JSON) plan, depth first."""
    found: list[dict[str, Any]] = []
    if isinstance(plan, dict):
        if "Node Type" in plan:
            found.append(plan)
        for value in plan.values():
            found += nodes(value)
    elif isinstance(plan, list):
        for item in plan:
            found += nodes(item)
    return found


def seq_scanned(plan: Any) -> set[str]:
    """The relations a plan reads with a sequential scan."""
    return {n["Relation Name"] for n in nodes(plan) if n["Node Type"] == "Seq Scan"}


def index_rows_read(plan: Any, index: str) -> int:
    """How many index entries the analyzed plan's scans of `index` returned, in all loops
    (plus those they filtered out)."""
    total = 0
    for node in nodes(plan):
        if node.get("Index Name") == index:
            rows = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
            total += rows * node.get("Actual Loops", 1)
    return total
