"""Test harness: a real Postgres, a migrated template, a fresh database per test.

With DATABASE_URL set, tests use that server (the role needs CREATEDB). Otherwise one
throwaway cluster is started per run with fsync, synchronous_commit and full_page_writes off,
and removed afterwards. Each test gets `CREATE DATABASE test_<hex> TEMPLATE <migrated>`
(tens of milliseconds) and it is dropped WITH (FORCE) after, so tests never see each other's
rows.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from skiplock import db

REPO = Path(__file__).resolve().parent.parent
# moto_server and bucket: a real S3 protocol endpoint (tests/s3_fixtures.py).
pytest_plugins = ["s3_fixtures", "storage_backends"]


def with_dbname(url: str, dbname: str) -> str:
    return make_conninfo(url, dbname=dbname)


def create_database(server_url: str, name: str, template: str | None = None) -> str:
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(statement)
    return with_dbname(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A maintenance URL of the server the tests use."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    from skiplock.embedded import EmbeddedPostgres

    root = Path(tempfile.mkdtemp(prefix="skiplock-test-"))
    root.chmod(0o755)  # when run as root, the postgres OS user runs the server in here
    pg = EmbeddedPostgres(root / "pgdata", unsafe_fast=True)
    pg.start()
    try:
        yield pg.url("postgres")
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def template_name(server_url: str) -> Iterator[str]:
    """A database migrated once per run, cloned by every test."""
    name = f"skiplock_template_{uuid.uuid4().hex[:8]}"
    db.migrate(create_database(server_url, name))
    try:
        yield name
    finally:
        drop_database(server_url, name)


@pytest.fixture
def database_url(server_url: str, template_name: str) -> Iterator[str]:
    """A fresh, migrated database of this test's own."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    try:
        yield create_database(server_url, name, template=template_name)
    finally:
        drop_database(server_url, name)


@pytest.fixture
def empty_database_url(server_url: str) -> Iterator[str]:
    """A fresh database with no skiplock schema (for migration tests)."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    try:
        yield create_database(server_url, name)
    finally:
        drop_database(server_url, name)


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A synchronous autocommit connection to the test's database, search_path skiplock."""
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute("SET search_path = skiplock")
        yield c


@pytest.fixture
async def aconn(database_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    c = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
def company_id(conn: psycopg.Connection[Any]) -> uuid.UUID:
    row = conn.execute("INSERT INTO companies (name) VALUES ('acme') RETURNING id").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[Any]:
    """A cluster of the module's own, for tests that stop or restart Postgres; database
    `outage` is migrated."""
    from processes import free_port
    from skiplock.embedded import EmbeddedPostgres

    root = Path(tempfile.mkdtemp(prefix="skiplock-outage-"))
    root.chmod(0o755)
    pg = EmbeddedPostgres(root / "pgdata", port=free_port(), unsafe_fast=True)
    pg.start()
    try:
        with psycopg.connect(pg.url(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE outage")
        db.migrate(pg.url("outage"))
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
