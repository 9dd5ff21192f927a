"""What every bench script needs: a throwaway Postgres and a fresh migrated database.

A cluster with default settings (fsync and synchronous_commit on), started with the
system's binaries, unless DATABASE_URL names a server whose role may create databases.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "service"))

from skiplock import db  # noqa: E402
from skiplock.embedded import EmbeddedPostgres  # noqa: E402


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextmanager
def server() -> Iterator[str]:
    """A maintenance URL: DATABASE_URL's server, or a throwaway cluster."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    root = Path(tempfile.mkdtemp(prefix="skiplock-bench-"))
    root.chmod(0o755)  # when run as root, the postgres OS user runs the server in here
    pg = EmbeddedPostgres(root / "pgdata", port=free_port())
    pg.start()
    try:
        yield pg.url("postgres")
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new database, migrated, dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(server_url, dbname=name)
    db.migrate(url)
    try:
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def skiplock_functions(events: bool = True) -> str:
    """CREATE OR REPLACE of the worker's claim_content_jobs() and finish_content_jobs() as
    sql/0006 ships them, or (events=False) with their event rows left out: what the event
    log costs, for the bench's with/without cases."""
    migration = (REPO / "sql/0006.fair-claiming.sql").read_text()
    functions = []
    for name, indent in (("claim_content_jobs", "        "), ("finish_content_jobs", "    ")):
        start = migration.index(f"CREATE FUNCTION skiplock.{name}(")
        body = migration[start : migration.index("$$;", start) + 3]
        if not events:
            body = re.sub(rf"{indent}logged AS \(.*?\n{indent}\),\n", "", body, flags=re.S)
        functions.append(body.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    return "\n".join(functions)
