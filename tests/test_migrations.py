"""Migrations: up, twice, down to nothing, up again; shipped inside a plain wheel install."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cli_helpers import REPO, one_line_error, run_cli
from skiplock import db


def skiplock_tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'skiplock' "
            "AND tablename NOT LIKE '%%yoyo%%'"
        ).fetchall()
    return {r[0] for r in rows}


ALL = (
    "0001.schema",
    "0002.worker",
    "0003.batch-enqueue",
    "0004.pause-and-running-hint",
    "0005.storage",
    "0006.fair-claiming",
    "0007.webhooks-schedules",
    "0008.operations",
    "0009.deliveries-without-job-fk",
    "0010.time-ordered-job-ids",
)


def test_migrate_twice_is_a_no_op_and_rollback_then_migrate_works(
    empty_database_url: str,
) -> None:
    first = db.migrate(empty_database_url)
    assert first.applied == ALL
    tables = skiplock_tables(empty_database_url)
    assert {"companies", "content_jobs", "content_job_events", "assets", "workers"} <= tables

    assert db.migrate(empty_database_url).applied == ()
    assert skiplock_tables(empty_database_url) == tables

    # --rollback undoes the last migration only, one at a time.
    for name in reversed(ALL):
        assert db.migrate(empty_database_url, rollback=True).rolled_back == (name,)
    assert skiplock_tables(empty_database_url) == set()
    assert db.migrate(empty_database_url, rollback=True).rolled_back == ()

    assert db.migrate(empty_database_url).applied == ALL
    assert skiplock_tables(empty_database_url) == tables


def test_migrate_cli_reports_what_it_did(empty_database_url: str) -> None:
    env = {"DATABASE_URL": empty_database_url}
    first = run_cli("migrate", env=env)
    assert first.returncode == 0
    assert f"applied {len(ALL)} migration(s): {', '.join(ALL)}" in first.stdout
    again = run_cli("migrate", env=env)
    assert again.returncode == 0 and "up to date" in again.stdout
    down = run_cli("migrate", "--rollback", env=env)
    assert down.returncode == 0 and f"rolled back: {ALL[-1]}" in down.stdout


def test_migrate_rebases_event_xids_restored_from_another_cluster(
    database_url: str, conn: psycopg.Connection[Any], company_id: Any
) -> None:
    conn.execute(
        "INSERT INTO content_jobs (company_id, job_type) SELECT %s, 'x' FROM generate_series(1, 3)",
        (company_id,),
    )
    # As if restored from a cluster whose xids ran far ahead of this one's.
    conn.execute(
        "UPDATE content_job_events SET xid = "
        "(pg_current_xact_id()::text::bigint + 1000000 + id)::text::xid8"
    )
    before = [
        r[0] for r in conn.execute("SELECT id FROM content_job_events ORDER BY xid, id").fetchall()
    ]

    report = db.migrate(database_url)
    assert report.rebased_events == 3

    row = conn.execute("SELECT max(xid) < pg_current_xact_id() FROM content_job_events").fetchone()
    assert row == (True,)
    after = [
        r[0] for r in conn.execute("SELECT id FROM content_job_events ORDER BY xid, id").fetchall()
    ]
    assert after == before
    assert db.migrate(database_url).rebased_events == 0


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with skiplock installed from a freshly built wheel (not editable).

    Its dependencies come from this test run's own environment through a .pth file, so the
    test checks what the wheel carries without downloading anything.
    """
    root = tmp_path_factory.mktemp("wheel")
    # setuptools builds in REPO/build and never removes files that left the source tree (a
    # renamed migration would ship twice): start from a clean one.
    shutil.rmtree(REPO / "build", ignore_errors=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(root / "dist"),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next((root / "dist").glob("skiplock-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    )
    site_dir = Path(site.stdout.strip())
    (site_dir / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(site_dir),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    return venv


@pytest.mark.slow
def test_wheel_install_migrates_and_without_sql_fails_in_one_line(
    wheel_venv: Path, empty_database_url: str, tmp_path: Path
) -> None:
    python = str(wheel_venv / "bin" / "python")
    env = {"DATABASE_URL": empty_database_url}
    # Run from an empty directory, so nothing of the checkout can be found by accident.
    result = run_cli("migrate", env=env, executable=[python, "-m", "skiplock"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"applied {len(ALL)} migration(s)" in result.stdout
    origin = subprocess.run(
        [python, "-c", "import skiplock; print(skiplock.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    package = Path(origin.stdout.strip()).parent
    assert str(wheel_venv) in str(package), "imported the checkout, not the wheel"
    assert (package / "sql" / "0001.schema.sql").is_file()
    # Every module of the checkout made it into the wheel.
    service = REPO / "service" / "skiplock"
    modules = sorted(
        "skiplock." + ".".join(p.relative_to(service).with_suffix("").parts)
        for p in service.rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
    )
    imported = subprocess.run(
        [python, "-c", f"import importlib; [importlib.import_module(m) for m in {modules!r}]"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr

    shutil.rmtree(package / "sql")
    broken = run_cli("migrate", env=env, executable=[python, "-m", "skiplock"], cwd=tmp_path)
    line = one_line_error(broken)
    assert "no migrations found" in line and "0 migration" not in line
