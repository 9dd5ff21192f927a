"""`skiplock dev`: embedded Postgres, the three lines, the same key every run, clean Ctrl-C."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from cli_helpers import one_line_error, run_cli
from processes import free_port, postgres_processes, start_dev, stop_dev
from skiplock.embedded import EmbeddedPostgres
from worker_harness import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="skiplock-dev-"))
    root.chmod(0o755)
    yield root / "data"
    shutil.rmtree(root, ignore_errors=True)


def test_dev_prints_the_lines_keeps_its_key_and_stops_postgres(data_dir: Path) -> None:
    port = free_port()
    first = start_dev(data_dir, port)
    try:
        assert first.lines["url"] == f"http://127.0.0.1:{port}"
        assert first.lines["companyId"] and first.lines["apiKey"].startswith("sk_")
        pgdata = Path(first.lines["pgdata"])
        with urllib.request.urlopen(f"{first.lines['url']}/healthz", timeout=10) as response:
            assert response.status == 200
        assert postgres_processes(pgdata)
        _dev_worker_renders_a_diagram(first.lines["database"], first.lines["companyId"], data_dir)
    finally:
        assert stop_dev(first) == 0
    assert postgres_processes(pgdata) == [], "Ctrl-C left Postgres running"

    second = start_dev(data_dir, port)
    try:
        assert second.lines["apiKey"] == first.lines["apiKey"]
        assert second.lines["companyId"] == first.lines["companyId"]
    finally:
        assert stop_dev(second) == 0
    assert postgres_processes(pgdata) == []
    print(
        f"\nskiplock dev ready: first run {first.seconds_to_ready:.1f}s, "
        f"second run {second.seconds_to_ready:.1f}s"
    )


def _dev_worker_renders_a_diagram(database_url: str, company_id: str, data_dir: Path) -> None:
    """dev runs a worker in-process: a job queued in SQL is rendered into data_dir/storage."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT skiplock.enqueue_content_job(%s, 'diagram', %s)",
            (company_id, Jsonb({"source": "digraph { dev -> done }"})),
        ).fetchone()
        assert row is not None
        done = wait_for(
            lambda: conn.execute(
                "SELECT a.object_key FROM skiplock.content_jobs j "
                "JOIN skiplock.assets a ON a.id = j.result_asset_id WHERE j.id = %s",
                (row[0],),
            ).fetchone(),
            timeout=20,
        )
    assert b"<svg" in (data_dir / "storage" / done[0]).read_bytes()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs Postgres as another user")
def test_dev_as_root_in_a_directory_postgres_cannot_reach() -> None:
    private = Path(tempfile.mkdtemp(prefix="skiplock-private-"))  # mode 0700, owned by root
    data_dir = private / "data"
    expected = (
        Path("/var/lib/skiplock")
        / hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    )
    try:
        run = start_dev(data_dir, free_port())
        try:
            pgdata = Path(run.lines["pgdata"])
            assert pgdata.is_relative_to("/var/lib/skiplock")
            assert run.lines["apiKey"].startswith("sk_")
        finally:
            assert stop_dev(run) == 0
        assert postgres_processes(pgdata) == []
    finally:
        shutil.rmtree(private, ignore_errors=True)
        shutil.rmtree(expected, ignore_errors=True)


def test_a_second_dev_on_the_same_data_dir_is_refused_and_leaves_the_first_alone(
    data_dir: Path,
) -> None:
    """Issue 13: a second dev used to adopt the first one's Postgres and stop it on exit."""
    first = start_dev(data_dir, free_port())
    try:
        pgdata = Path(first.lines["pgdata"])
        second = run_cli(
            "dev",
            "--data-dir",
            str(data_dir),
            "--port",
            str(free_port()),
            env={"DATABASE_URL": None},
            timeout=60,
        )
        line = one_line_error(second)
        assert line == (
            f"skiplock: another skiplock dev (pid {first.process.pid}) is running on "
            f"{data_dir.resolve()}; stop it first, or pass another --data-dir"
        )
        assert postgres_processes(pgdata), "the second dev stopped the first one's Postgres"
        with urllib.request.urlopen(f"{first.lines['url']}/healthz", timeout=10) as response:
            assert response.status == 200
    finally:
        assert stop_dev(first) == 0
    assert postgres_processes(pgdata) == []


def test_dev_never_stops_a_postgres_it_did_not_start(data_dir: Path) -> None:
    first = start_dev(data_dir, free_port())  # makes the cluster
    assert stop_dev(first) == 0
    cluster = EmbeddedPostgres.for_data_dir(data_dir, log_file=data_dir / "postgres.log")
    cluster.start()  # a person (or a crashed dev) left a server running on it
    try:
        adopting = start_dev(data_dir, free_port())
        assert stop_dev(adopting) == 0
        assert postgres_processes(cluster.pgdata), "dev stopped a server it did not start"
        assert "adopted" in adopting.lines.get("postgres", "")
    finally:
        cluster.stop()
