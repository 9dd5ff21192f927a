"""The named queries of sql/queries/, one async function each.

Every SQL statement skiplock runs is a file in sql/queries/ (loaded once, here), so a person
can read them all in one place. Functions take an autocommit AsyncConnection (from the pool
or a dedicated one) and return plain rows; they hold no state.
"""

from __future__ import annotations

import uuid
from functools import cache
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from skiplock import paths
from skiplock.errors import MigrationError

Row = dict[str, Any]


@cache
def query(name: str) -> str:
    """The text of sql/queries/<name>.sql (shipped in the wheel as skiplock/sql/queries)."""
    folder = paths.queries_dir()
    if folder is None:
        raise MigrationError(
            "skiplock: the SQL folder skiplock/sql is missing from this install; "
            "reinstall skiplock (pip install --force-reinstall skiplock)"
        )
    text = (folder / f"{name}.sql").read_text("utf-8")
    # The files are ours, shipped with the package: as trusted as a literal in this module.
    return text


def query_names() -> list[str]:
    folder = paths.queries_dir()
    return sorted(p.stem for p in folder.glob("*.sql")) if folder else []


async def _one(
    conn: AsyncConnection[Any], name: str, params: dict[str, Any], *, prepare: bool = False
) -> Row | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query(name), params, prepare=prepare)
        return await cur.fetchone()


async def _all(
    conn: AsyncConnection[Any], statement: sql.Composed | str, params: dict[str, Any]
) -> list[Row]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(statement, params, prepare=True)
        return await cur.fetchall() if cur.description else []  # [] for one without RETURNING


async def rows(conn: AsyncConnection[Any], name: str, params: dict[str, Any]) -> list[Row]:
    """Every row of the named query (the webhook and schedule modules run theirs with it)."""
    return await _all(conn, query(name), params)


# ------------------------------------------------------------------------------------------
# Companies and keys
# ------------------------------------------------------------------------------------------


async def create_company(conn: AsyncConnection[Any], name: str) -> Row:
    row = await _one(conn, "create_company", {"name": name})
    if row is None:  # INSERT ... RETURNING always returns the row
        raise RuntimeError("create_company returned no row")
    return row


async def find_company_by_name(conn: AsyncConnection[Any], name: str) -> Row | None:
    return await _one(conn, "find_company_by_name", {"name": name})


COMPANY_LIMITS = ("max_running", "max_queued")


async def update_company_limits(
    conn: AsyncConnection[Any], company_id: uuid.UUID, limits: dict[str, int | None]
) -> Row | None:
    """Set the limits named in `limits` (max_running, max_queued; None = unlimited), keep
    the others; the company's row (id, name, max_running, max_queued), or None when no such
    company exists."""
    unknown = set(limits) - set(COMPANY_LIMITS)
    if unknown:
        raise ValueError(f"unknown company limit(s) {sorted(unknown)}")
    params: dict[str, Any] = {"company_id": company_id}
    for name in COMPANY_LIMITS:
        params[f"set_{name}"] = name in limits
        params[name] = limits.get(name)
    return await _one(conn, "update_company_limits", params)


async def create_api_key(
    conn: AsyncConnection[Any], key_id: uuid.UUID, company_id: uuid.UUID, key_hash: str
) -> Row | None:
    """None when the company does not exist."""
    params = {"id": key_id, "company_id": company_id, "key_hash": key_hash}
    return await _one(conn, "create_api_key", params)


async def revoke_api_key(conn: AsyncConnection[Any], key_id: uuid.UUID) -> Row | None:
    """None when no such key exists."""
    return await _one(conn, "revoke_api_key", {"id": key_id})


async def find_api_key(conn: AsyncConnection[Any], key_id: uuid.UUID) -> Row | None:
    return await _one(conn, "find_api_key", {"id": key_id})


async def create_stream_token(
    conn: AsyncConnection[Any],
    *,
    token_id: uuid.UUID,
    key_id: uuid.UUID,
    company_id: uuid.UUID,
    token_hash: str,
    lifetime_seconds: int,
) -> Row:
    params = {
        "id": token_id,
        "api_key_id": key_id,
        "company_id": company_id,
        "token_hash": token_hash,
        "lifetime_seconds": lifetime_seconds,
    }
    row = await _one(conn, "create_stream_token", params)
    if row is None:
        raise RuntimeError("create_stream_token returned no row")
    return row


async def find_stream_token(conn: AsyncConnection[Any], token_id: uuid.UUID) -> Row | None:
    return await _one(conn, "find_stream_token", {"id": token_id})


# ------------------------------------------------------------------------------------------
# The event log
# ------------------------------------------------------------------------------------------


async def find_event_position(
    conn: AsyncConnection[Any],
    event_id: int,
    company_id: uuid.UUID,
    job_id: uuid.UUID | None = None,
) -> Row | None:
    params = {"event_id": event_id, "company_id": company_id, "job_id": job_id}
    return await _one(conn, "find_event_position", params)


async def read_events_after(
    conn: AsyncConnection[Any],
    *,
    scope: str,
    scope_id: uuid.UUID,
    after_xid: int,
    after_id: int,
    limit: int,
) -> list[Row]:
    """scope is 'company_id' or 'job_id'. One row even when no event is due (id is None)."""
    if scope not in ("company_id", "job_id"):
        raise ValueError(f"unknown event scope {scope!r}")
    statement = sql.SQL(query("read_events_after")).format(scope=sql.Identifier(scope))
    params = {
        "scope_id": scope_id,
        "after_xid": str(after_xid),
        "after_id": after_id,
        "limit": limit,
    }
    return await _all(conn, statement, params)


async def read_all_events_after(
    conn: AsyncConnection[Any], *, after_xid: int, after_id: int, limit: int
) -> list[Row]:
    params = {"after_xid": str(after_xid), "after_id": after_id, "limit": limit}
    return await _all(conn, query("read_all_events_after"), params)


# ------------------------------------------------------------------------------------------
# Jobs
# ------------------------------------------------------------------------------------------


async def claim_jobs(
    conn: AsyncConnection[Any],
    *,
    worker_id: str,
    job_types: list[str],
    limit: int,
    lease_seconds: float,
    after: uuid.UUID | None = None,
) -> list[Row]:
    """Up to `limit` jobs, leased to worker_id, in turn order; `after` is the company the
    previous claim ended on (its last row's company_id)."""
    params = {
        "worker_id": worker_id,
        "job_types": job_types,
        "limit": limit,
        "lease_seconds": lease_seconds,
        "after": after,
    }
    # Binary rows: uuids, timestamps and numbers parse faster than their text (with the
    # narrow column list, about 2 us less of the worker's Python per job).
    async with conn.cursor(row_factory=dict_row, binary=True) as cur:
        await cur.execute(query("claim_jobs"), params, prepare=True)
        return await cur.fetchall()


async def renew_leases(
    conn: AsyncConnection[Any],
    *,
    worker_id: str,
    held: dict[uuid.UUID, int],
    lease_seconds: float,
) -> set[uuid.UUID]:
    """Renew the leases of `held` (job id -> claimed attempt); the ids still held."""
    params = {
        "worker_id": worker_id,
        "job_ids": list(held),
        "attempts": list(held.values()),
        "lease_seconds": lease_seconds,
    }
    return {row["id"] for row in await _all(conn, query("renew_leases"), params)}


async def rescue_expired_leases(conn: AsyncConnection[Any], *, limit: int = 1000) -> list[Row]:
    """Requeue (or fail, when out of attempts) up to `limit` jobs whose lease has passed."""
    return await _all(conn, query("rescue_expired_leases"), {"limit": limit})


# ------------------------------------------------------------------------------------------
# The HTTP API's job and asset queries
# ------------------------------------------------------------------------------------------


async def insert_job(conn: AsyncConnection[Any], params: dict[str, Any]) -> Row | None:
    """None when the idempotency key is already taken (see find_job_by_idempotency_key)."""
    return await _one(conn, "insert_job", params, prepare=True)  # the submit hot path


async def insert_jobs(conn: AsyncConnection[Any], params: dict[str, list[Any]]) -> list[Row]:
    """The rows inserted; a job whose idempotency key was taken has none (see
    find_job_by_idempotency_key)."""
    return await _all(conn, query("insert_jobs"), params)  # the submit hot path


async def find_job_by_idempotency_key(
    conn: AsyncConnection[Any], company_id: uuid.UUID, key: str
) -> Row | None:
    return await _one(
        conn, "find_job_by_idempotency_key", {"company_id": company_id, "idempotency_key": key}
    )


async def find_job(
    conn: AsyncConnection[Any], company_id: uuid.UUID, job_id: uuid.UUID
) -> Row | None:
    return await _one(conn, "find_job", {"company_id": company_id, "job_id": job_id})


async def cancel_job(
    conn: AsyncConnection[Any], company_id: uuid.UUID, job_id: uuid.UUID
) -> Row | None:
    return await _one(conn, "cancel_job", {"company_id": company_id, "job_id": job_id})


async def retry_job(
    conn: AsyncConnection[Any], company_id: uuid.UUID, job_id: uuid.UUID
) -> Row | None:
    return await _one(conn, "retry_job", {"company_id": company_id, "job_id": job_id})


async def cancel_jobs_matching(conn: AsyncConnection[Any], params: dict[str, Any]) -> Row:
    """One batch of a bulk cancel: {matched, changed, cutoff} (see bulk.py)."""
    return await _batch_row(conn, "cancel_jobs_matching", params)


async def retry_jobs_matching(conn: AsyncConnection[Any], params: dict[str, Any]) -> Row:
    """One batch of a bulk retry: {matched, changed, cutoff} (see bulk.py)."""
    return await _batch_row(conn, "retry_jobs_matching", params)


async def count_jobs_matching(conn: AsyncConnection[Any], params: dict[str, Any]) -> int:
    row = await _batch_row(conn, "count_jobs_matching", params)
    count: int = row["count"]
    return count


async def _batch_row(conn: AsyncConnection[Any], name: str, params: dict[str, Any]) -> Row:
    row = await _one(conn, name, params)
    if row is None:  # a SELECT of aggregates always returns one row
        raise RuntimeError(f"{name} returned no row")
    return row


async def list_company_ids(
    conn: AsyncConnection[Any], company_id: uuid.UUID | None = None
) -> list[uuid.UUID]:
    """Every company's id, oldest first; or [company_id] when it exists, else []."""
    async with conn.cursor() as cur:
        await cur.execute(query("list_company_ids"), {"company_id": company_id})
        return [row[0] for row in await cur.fetchall()]


async def find_any_job(conn: AsyncConnection[Any], job_id: uuid.UUID) -> Row | None:
    """A job by id alone, for operators (the API always scopes by company)."""
    return await _one(conn, "find_any_job", {"job_id": job_id})


async def list_any_jobs(conn: AsyncConnection[Any], params: dict[str, Any]) -> list[Row]:
    """Newest jobs, of one company or all, for operators: company_id, status, job_type
    (each None for any) and limit."""
    async with conn.cursor(row_factory=dict_row) as cur:  # run once: not worth preparing
        await cur.execute(query("list_any_jobs"), params)
        return await cur.fetchall()


async def company_stats(conn: AsyncConnection[Any], company_id: uuid.UUID) -> list[Row]:
    return await _all(conn, query("company_stats"), {"company_id": company_id})


# ------------------------------------------------------------------------------------------
# Operations: pausing job types, retention
# ------------------------------------------------------------------------------------------


async def pause_job_type(
    conn: AsyncConnection[Any], job_type: str, company_id: uuid.UUID | None
) -> None:
    await conn.execute(query("pause_job_type"), {"job_type": job_type, "company_id": company_id})


async def resume_job_type(
    conn: AsyncConnection[Any], job_type: str, company_id: uuid.UUID | None
) -> int:
    """How many pauses were lifted."""
    params = {"job_type": job_type, "company_id": company_id}
    cursor = await conn.execute(query("resume_job_type"), params)
    return cursor.rowcount


async def list_paused_job_types(conn: AsyncConnection[Any], job_type: str) -> list[Row]:
    return await rows(conn, "list_paused_job_types", {"job_type": job_type})


async def purge_finished_jobs(
    conn: AsyncConnection[Any], *, retention_seconds: int, limit: int
) -> Row:
    """One batch of job retention: {jobs, events, objects: [[provider, object_key], …]}."""
    params = {"retention_seconds": retention_seconds, "limit": limit}
    return await _batch_row(conn, "purge_finished_jobs", params)


async def find_asset(
    conn: AsyncConnection[Any], company_id: uuid.UUID, asset_id: uuid.UUID
) -> Row | None:
    return await _one(conn, "find_asset", {"company_id": company_id, "asset_id": asset_id})


async def event_log_tip(conn: AsyncConnection[Any]) -> Row | None:
    return await _one(conn, "event_log_tip", {})


async def find_job_with_tip(
    conn: AsyncConnection[Any], company_id: uuid.UUID, job_id: uuid.UUID
) -> Row | None:
    return await _one(conn, "find_job_with_tip", {"company_id": company_id, "job_id": job_id})


async def metrics_snapshot(conn: AsyncConnection[Any]) -> Row:
    """The database gauges of /metrics: jobs_by_status ({status: count}), queue_depth,
    event_horizon_age_seconds, notification_queue_usage. All companies summed."""
    row = await _one(conn, "metrics_snapshot", {})
    if row is None:  # a SELECT without FROM always returns one row
        raise RuntimeError("metrics_snapshot returned no row")
    return row
