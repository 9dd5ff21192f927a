"""The command line: one clear line and exit 2 for every mistake, JSON for admin output."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import psycopg

from cli_helpers import one_line_error, run_cli


def test_bad_database_url_is_one_line() -> None:
    line = one_line_error(run_cli("migrate", env={"DATABASE_URL": "postgresql://u:secret@[bad"}))
    assert "DATABASE_URL" in line and "secret" not in line


def test_unreachable_database_is_one_line() -> None:
    line = one_line_error(
        run_cli("migrate", env={"DATABASE_URL": "postgresql://u:hunter2@127.0.0.1:1/skiplock"})
    )
    assert "cannot connect to Postgres at 127.0.0.1:1" in line
    assert "hunter2" not in line


def test_missing_database_url_is_one_line() -> None:
    line = one_line_error(run_cli("company", "create", "x", env={"DATABASE_URL": None}))
    assert "DATABASE_URL is not set" in line


def test_bad_lease_seconds_is_one_line() -> None:
    line = one_line_error(run_cli("migrate", env={"SKIPLOCK_LEASE_SECONDS": "abc"}))
    assert line == (
        "skiplock: SKIPLOCK_LEASE_SECONDS='abc' is not a whole number of seconds (default 30)"
    )
    line = one_line_error(run_cli("migrate", env={"SKIPLOCK_LEASE_SECONDS": "0"}))
    assert "out of range" in line


def test_bad_numeric_settings_are_named() -> None:
    names = (
        "SKIPLOCK_GENERATED_ASSET_MAX_BYTES",
        "SKIPLOCK_EVENT_RETENTION_DAYS",
        "SKIPLOCK_CHILD_MEMORY_MB",
        "SKIPLOCK_CHILD_CPU_SECONDS",
        "SKIPLOCK_RENDER_MAX_PIXELS",
        "SKIPLOCK_HTTP_MAX_HEADER_BYTES",
        "SKIPLOCK_HTTP_MAX_CONNECTIONS",
        "SKIPLOCK_SSE_MAX_STREAMS",
        "SKIPLOCK_SSE_MAX_STREAMS_PER_COMPANY",
    )
    for name in names:
        assert name in one_line_error(run_cli("migrate", env={name: "-5"}))


def test_company_and_key_administration(database_url: str) -> None:
    env = {"DATABASE_URL": database_url}
    created = run_cli("company", "create", "Acme Inc", env=env)
    assert created.returncode == 0, created.stderr
    company = json.loads(created.stdout)
    assert set(company) >= {"companyId", "apiKey"}

    key = run_cli("key", "create", company["companyId"], env=env)
    assert key.returncode == 0, key.stderr
    new_key = json.loads(key.stdout)
    assert set(new_key) == {"keyId", "apiKey"} and new_key["apiKey"] != company["apiKey"]

    revoked = run_cli("key", "revoke", new_key["keyId"], env=env)
    assert revoked.returncode == 0, revoked.stderr
    with psycopg.connect(database_url) as conn:
        row: Any = conn.execute(
            "SELECT revoked_at IS NOT NULL FROM skiplock.api_keys WHERE id = %s",
            (new_key["keyId"],),
        ).fetchone()
    assert row == (True,)

    assert "no company with id" in one_line_error(
        run_cli("key", "create", "00000000-0000-0000-0000-000000000000", env=env)
    )
    assert "not a company id" in one_line_error(run_cli("key", "create", "nope", env=env))
    assert "no API key with id" in one_line_error(
        run_cli("key", "revoke", "00000000-0000-0000-0000-000000000000", env=env)
    )


def test_console_script_and_module_are_the_same_cli() -> None:
    script = str(Path(sys.executable).parent / "skiplock")
    result = run_cli("--help", executable=[script])
    assert result.returncode == 0 and "migrate" in result.stdout


def test_worker_mistakes_are_one_line(database_url: str) -> None:
    env = {"DATABASE_URL": database_url}
    unknown = one_line_error(run_cli("worker", "--types", "nope", env=env))
    assert unknown.startswith("skiplock: no handler is registered for job type(s) nope")
    missing = one_line_error(run_cli("worker", "--handlers", "no_such_handlers", env=env))
    assert "cannot import handler module 'no_such_handlers'" in missing
    down = one_line_error(
        run_cli("worker", env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"})
    )
    assert down.startswith("skiplock: cannot connect to Postgres at 127.0.0.1:1")
    usage = run_cli("worker", "--concurrency", "0", env=env)
    assert usage.returncode == 2 and "at least 1" in usage.stderr


def test_serve_and_dev_on_a_taken_port_say_one_line(database_url: str, tmp_path: Path) -> None:
    """Issue 13: not uvicorn's `ERROR: [Errno 98]` and exit 3, nor dev's traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        env = {"DATABASE_URL": database_url, "SKIPLOCK_STORAGE_DIR": str(tmp_path / "storage")}
        served = one_line_error(run_cli("serve", "--port", port, env=env))
        dev = one_line_error(run_cli("dev", "--port", port, "--data-dir", str(tmp_path), env=env))
    for line in (served, dev):
        assert line == (
            f"skiplock: cannot listen on 127.0.0.1:{port} (address already in use); "
            "choose another with --port"
        )


def test_serve_on_an_unknown_host_says_one_line(database_url: str) -> None:
    line = one_line_error(
        run_cli("serve", "--host", "no-such-host.invalid", env={"DATABASE_URL": database_url})
    )
    assert line.startswith("skiplock: cannot listen on no-such-host.invalid:8000 (")
