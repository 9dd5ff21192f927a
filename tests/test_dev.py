"""`skiplock dev`: embedded Postgres, the three lines, the same key every run, clean Ctrl-C."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli_helpers import REPO

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_processes(pgdata: Path) -> list[int]:
    """Pids of processes whose command line names this cluster's data directory."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(pgdata) in cmdline and "postgres" in cmdline:
            found.append(int(entry.name))
    return found


@dataclass
class DevRun:
    lines: dict[str, str]
    seconds_to_ready: float
    process: subprocess.Popen[str]


def start_dev(data_dir: Path, port: int) -> DevRun:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "skiplock", "dev", "--data-dir", str(data_dir), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=REPO,
    )
    lines: dict[str, str] = {}
    assert process.stdout is not None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        key, _, value = line.strip().partition(": ")
        if value:
            lines[key] = value
        if line.startswith("ready"):
            return DevRun(lines, time.monotonic() - started, process)
    process.kill()
    process.wait()
    process.stdout.close()
    raise AssertionError(f"skiplock dev never got ready; said {lines}")


def stop_dev(run: DevRun) -> int:
    run.process.send_signal(signal.SIGINT)
    try:
        return run.process.wait(timeout=60)
    finally:
        if run.process.stdout is not None:
            run.process.stdout.close()


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
