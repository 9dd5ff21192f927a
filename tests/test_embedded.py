"""The embedded Postgres: real initdb, pg_ctl and postgres processes, no mocks.

Self-contained (no conftest fixtures): each test makes its own cluster in a directory the
postgres OS user can reach, because as root the server runs as that user.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import LiteralString

import psycopg
import pytest

from skiplock.embedded import EmbeddedPostgres, EmbeddedPostgresError, find_postgres_bindir

IS_ROOT = os.geteuid() == 0


def _have_server_binaries() -> bool:
    try:
        find_postgres_bindir()
    except EmbeddedPostgresError:
        return False
    return True


needs_server = pytest.mark.skipif(
    not _have_server_binaries() or not Path("/proc/self/cmdline").exists(),
    reason="needs PostgreSQL server binaries and Linux /proc",
)


@pytest.fixture
def cluster_root() -> Iterator[Path]:
    """A short path under /tmp that the postgres OS user can traverse (pytest's tmp_path,
    under /tmp/pytest-of-root with mode 0700, is not)."""
    root = Path(tempfile.mkdtemp(prefix="skiplock-embedded-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def processes_naming(path: Path) -> list[int]:
    """Pids whose command line mentions `path` (the postmaster's `-D pgdata`)."""
    needle = os.fsencode(path)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            found.append(int(entry.name))
    return found


def children_of(pid: int) -> list[int]:
    """Pids whose parent is `pid` (the postmaster's checkpointer, walwriter, …)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Whether `pid` is a process that has not exited (a zombie waiting for init has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def postmaster_pid(pg: EmbeddedPostgres) -> int:
    return int((pg.pgdata / "postmaster.pid").read_text().splitlines()[0])


def query(pg: EmbeddedPostgres, statement: LiteralString) -> list[tuple[object, ...]]:
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        cursor = conn.execute(statement)
        return cursor.fetchall() if cursor.description else []


@needs_server
def test_started_cluster_accepts_connections_and_stop_leaves_no_process(
    cluster_root: Path,
) -> None:
    pg = EmbeddedPostgres(cluster_root / "pgdata", unsafe_fast=True)
    with pg:
        assert pg.is_running()
        with psycopg.connect(pg.url()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            settings: dict[str, str] = dict(
                conn.execute(
                    "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                    (["fsync", "listen_addresses", "max_connections"],),
                ).fetchall()
            )
        assert settings == {"fsync": "off", "listen_addresses": "", "max_connections": "200"}
        pid = postmaster_pid(pg)
        children = children_of(pid)
        assert children, "a running postmaster has background processes"
        assert processes_naming(pg.pgdata) == [pid]

    assert not pg.is_running()
    assert processes_naming(pg.pgdata) == []
    assert [child for child in [pid, *children] if alive(child)] == []
    pg.stop()  # stopping a stopped cluster is a no-op


@needs_server
def test_restart_over_same_data_dir_keeps_data(cluster_root: Path) -> None:
    pgdata = cluster_root / "pgdata"
    with EmbeddedPostgres(pgdata, unsafe_fast=True) as first:
        query(first, "CREATE TABLE kept (note text)")
        query(first, "INSERT INTO kept VALUES ('still here')")

    with EmbeddedPostgres(pgdata, unsafe_fast=True) as second:
        assert query(second, "SELECT note FROM kept") == [("still here",)]
    assert (pgdata / "PG_VERSION").read_text().strip().isdigit()


@needs_server
def test_start_adopts_server_left_running_by_earlier_run(cluster_root: Path) -> None:
    crashed = EmbeddedPostgres(cluster_root / "pgdata", port=5432, unsafe_fast=True)
    crashed.start()
    try:
        pid = postmaster_pid(crashed)
        # A new run (the old process died without stopping its server) asks for another port:
        # it gets the server that is already there, on the port that server listens on.
        again = EmbeddedPostgres(cluster_root / "pgdata", port=5499, unsafe_fast=True)
        again.start()
        assert again.port == 5432
        assert query(again, "SELECT 1") == [(1,)]
        assert postmaster_pid(again) == pid
        again.stop()
        assert not alive(pid)
    finally:
        crashed.stop()


@needs_server
def test_stale_pid_file_naming_a_live_process_does_not_block_start(cluster_root: Path) -> None:
    pg = EmbeddedPostgres(cluster_root / "pgdata", unsafe_fast=True)
    with pg:
        pass
    # A crash left postmaster.pid behind, and its pid now belongs to another program (this
    # test). Postgres alone would refuse to start ("Is another postmaster running?").
    lines = ["", str(pg.pgdata), "0", "5432", str(pg.socket_dir), "", "0 0", "ready   "]
    lines[0] = str(os.getpid())
    (pg.pgdata / "postmaster.pid").write_text("\n".join(lines) + "\n")
    assert not pg.is_running()
    with pg:
        assert query(pg, "SELECT 1") == [(1,)]
        assert postmaster_pid(pg) != os.getpid()


@needs_server
def test_server_that_cannot_start_fails_with_one_line_naming_the_log(cluster_root: Path) -> None:
    pg = EmbeddedPostgres(cluster_root / "pgdata", unsafe_fast=True)
    with pg:
        pass
    with (pg.pgdata / "postgresql.conf").open("a") as conf:
        conf.write("no_such_setting = 1\n")

    with pytest.raises(EmbeddedPostgresError) as failure:
        pg.start(timeout=20)

    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith("skiplock: PostgreSQL did not start")
    assert str(pg.log_file) in message
    assert "no_such_setting" in message  # the tail of the server log says why
    assert processes_naming(pg.pgdata) == []


@needs_server
def test_for_data_dir_keeps_cluster_in_data_dir_when_reachable(cluster_root: Path) -> None:
    pg = EmbeddedPostgres.for_data_dir(cluster_root / "dev", unsafe_fast=True)
    assert pg.pgdata == cluster_root / "dev" / "pgdata"
    assert pg.url().startswith("postgresql://postgres@/postgres?host=%2F")


@needs_server
@pytest.mark.skipif(not IS_ROOT, reason="only root hands the cluster to the postgres user")
def test_for_data_dir_as_root_moves_unreachable_cluster_to_var_lib(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)  # owned by root: the postgres user cannot traverse it
    data_dir = private / "dev"
    digest = hashlib.sha256(os.fsencode(os.path.realpath(data_dir))).hexdigest()[:16]
    home = Path("/var/lib/skiplock") / digest
    try:
        pg = EmbeddedPostgres.for_data_dir(data_dir, unsafe_fast=True)
        assert pg.pgdata == home / "pgdata"
        with pg:
            assert query(pg, "SELECT current_user") == [("postgres",)]
            server_uid = Path(f"/proc/{postmaster_pid(pg)}").stat().st_uid
            assert server_uid == (home / "pgdata").stat().st_uid != 0
        # The next run over the same data dir finds the same cluster.
        assert EmbeddedPostgres.for_data_dir(data_dir).pgdata == pg.pgdata
        assert processes_naming(pg.pgdata) == []
    finally:
        shutil.rmtree(home, ignore_errors=True)
        with contextlib.suppress(OSError):
            home.parent.rmdir()  # only if no other cluster lives there


def test_missing_major_version_is_one_line_naming_the_fix() -> None:
    with pytest.raises(EmbeddedPostgresError) as failure:
        find_postgres_bindir(required_major=99)

    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith("skiplock: ")
    assert "PostgreSQL 99" in message
    assert "install" in message


@needs_server
def test_found_bindir_holds_the_server_programs() -> None:
    bindir = find_postgres_bindir()
    for program in ("initdb", "pg_ctl", "postgres"):
        assert os.access(bindir / program, os.X_OK)
    version = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert "PostgreSQL" in version
