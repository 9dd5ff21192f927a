"""Connections, the pool, and migrations.

Every way skiplock reaches Postgres goes through here, so a database that is down or a URL
that is wrong becomes one line naming the server and the fix, never a traceback, and never
a password.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from skiplock import paths, store
from skiplock.errors import DatabaseUnavailable, MigrationError

SCHEMA = "skiplock"
CONNECT_TIMEOUT_SECONDS = 10

log = logging.getLogger(__name__)


def describe_server(database_url: str) -> str:
    """host:port (or the socket directory) of a URL, for messages; never the password."""
    try:
        params = conninfo_to_dict(database_url)
    except psycopg.Error:
        return "the server in DATABASE_URL"
    host = str(params.get("host") or "localhost")
    port = str(params.get("port") or "5432")
    return f"{host}:{port}"


def connection_failure(database_url: str, exc: BaseException) -> DatabaseUnavailable:
    """Turn psycopg's multi-line connection error into one line a person can act on."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # libpq says 'connection to server at "h" (ip), port p failed: <reason>'; keep the reason.
    reason = first.rsplit("failed: ", 1)[-1].strip().rstrip(".")
    return DatabaseUnavailable(
        f"skiplock: cannot connect to Postgres at {describe_server(database_url)} ({reason}); "
        "check DATABASE_URL and that the server is running"
    )


def _connect_kwargs(*, prepare: bool = True) -> dict[str, Any]:
    # TCP keepalives notice a half-open connection (a dead peer that sent no FIN) after
    # about 10 + 3 x 5 = 25 s; libpq ignores them on Unix sockets, where it cannot happen.
    # prepare=False: no server-side prepared statement ever (prepare_threshold None also
    # overrides execute(prepare=True)); a transaction pooler hands each transaction to any
    # server connection, where a statement prepared on another does not exist.
    return {
        "prepare_threshold": 5 if prepare else None,
        "autocommit": True,
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }


def connect(database_url: str) -> psycopg.Connection[Any]:
    """A synchronous autocommit connection (CLI administration, migrations).

    One-off connections prepare nothing: a statement run once gains nothing from it, and
    they may go through a transaction pooler.
    """
    try:
        return psycopg.connect(database_url, **_connect_kwargs(prepare=False))
    except psycopg.OperationalError as exc:
        raise connection_failure(database_url, exc) from None


async def connect_async(database_url: str) -> psycopg.AsyncConnection[Any]:
    """An asynchronous autocommit connection (LISTEN sessions, the event reader, CLI
    commands); like connect(), it prepares nothing."""
    try:
        return await psycopg.AsyncConnection.connect(database_url, **_connect_kwargs(prepare=False))
    except psycopg.OperationalError as exc:
        raise connection_failure(database_url, exc) from None


async def open_pool(
    database_url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    name: str = "skiplock",
    session_settings: str | None = None,
    timeout: float = 30.0,
    prepare: bool = True,
) -> AsyncConnectionPool:
    """An open pool of autocommit connections; fails with one line if Postgres is down.

    session_settings: SET statements run once on every new connection of the pool.
    timeout: how long a caller waits for a connection before PoolTimeout.
    prepare: False behind a transaction pooler (SKIPLOCK_DATABASE_POOLING=transaction):
        no prepared statements, and session_settings must be None (a SET would land on
        whichever server connection the pooler picked, and stay there for other clients).
    """
    if session_settings and not prepare:
        raise ValueError("session settings cannot be kept through a transaction pooler")

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        if session_settings:
            await conn.execute(session_settings)

    pool = AsyncConnectionPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        kwargs=_connect_kwargs(prepare=prepare),
        name=name,
        open=False,
        configure=configure,
        timeout=timeout,
    )
    try:
        await pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS)
    except Exception as exc:
        await pool.close()
        # The pool hides libpq's reason; one direct attempt recovers it for the message.
        try:
            conn = await connect_async(database_url)
        except DatabaseUnavailable as down:
            raise down from None
        await conn.close()
        raise DatabaseUnavailable(
            f"skiplock: cannot open a connection pool to Postgres at "
            f"{describe_server(database_url)} ({exc}); check DATABASE_URL"
        ) from None
    return pool


# ------------------------------------------------------------------------------------------
# Migrations
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MigrationReport:
    applied: tuple[str, ...]
    rolled_back: tuple[str, ...]
    pending_before: int
    total: int
    rebased_events: int


def migrations_dir() -> Path:
    """The folder of yoyo migrations (shipped inside the package as skiplock/sql)."""
    folder = paths.sql_dir()
    if folder is None or not any(folder.glob("*.sql")):
        where = folder or "skiplock/sql"
        raise MigrationError(
            f"skiplock: no migrations found in {where}; this install of skiplock is broken, "
            "reinstall it (pip install --force-reinstall skiplock)"
        )
    return folder


@contextmanager
def _yoyo_backend(database_url: str) -> Iterator[Any]:
    # yoyo only understands URLs; build its URI from libpq's own parse so every form of
    # DATABASE_URL (key=value, socket directories, options) works unchanged.
    from yoyo.connections import DatabaseURI, get_backend_class

    params: dict[str, Any] = dict(conninfo_to_dict(database_url))
    dbname = params.pop("dbname", None)
    params["schema"] = SCHEMA
    params.setdefault("connect_timeout", str(CONNECT_TIMEOUT_SECONDS))
    uri = DatabaseURI("postgresql+psycopg", None, None, None, None, dbname, params)
    try:
        backend = get_backend_class("postgresql+psycopg")(uri, "_yoyo_migration")
        backend.init_database()
    except psycopg.OperationalError as exc:
        raise connection_failure(database_url, exc) from None
    try:
        yield backend
    finally:
        backend.connection.close()


def migrate(database_url: str, *, rollback: bool = False) -> MigrationReport:
    """Apply every pending migration (or undo the last one); idempotent."""
    from yoyo import read_migrations

    folder = migrations_dir()
    with connect(database_url) as conn:
        conn.execute(store.query("create_schema"))  # yoyo keeps its tables in the schema
    migrations = read_migrations(str(folder))
    if len(migrations) == 0:
        raise MigrationError(f"skiplock: no migrations found in {folder}; reinstall skiplock")
    with _yoyo_backend(database_url) as backend, backend.lock():
        pending = backend.to_apply(migrations)
        if rollback:
            applied = [m for m in migrations if backend.is_applied(m)]
            last = applied[-1:]
            backend.rollback_migrations(last)
            return MigrationReport((), tuple(m.id for m in last), len(pending), len(migrations), 0)
        backend.apply_migrations(pending)
    rebased = rebase_event_xids(database_url)
    return MigrationReport(tuple(m.id for m in pending), (), len(pending), len(migrations), rebased)


def rebase_event_xids(database_url: str) -> int:
    """After a dump and restore into another cluster, bring event xids below this cluster's.

    xid8 values survive failover and pg_upgrade but not a restore elsewhere: restored events
    could carry xids above every new transaction's, so they would sort after new events and
    sit above the read horizon forever. Shift them all down by one offset, keeping their order.
    """
    with connect(database_url) as conn:
        row = conn.execute(store.query("rebase_event_xids")).fetchone()
    return int(row[0]) if row else 0
