"""Real skiplock processes for tests: start them, wait until ready, stop them, find leftovers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cli_helpers import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


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


def start_dev(
    data_dir: Path | None, port: int, command: list[str] | None = None, cwd: Path = REPO
) -> DevRun:
    """Start `skiplock dev` (or `command`) with DATABASE_URL unset; wait for its lines."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    args = command or [sys.executable, "-m", "skiplock", "dev"]
    if data_dir is not None:
        args = [*args, "--data-dir", str(data_dir)]
    started = time.monotonic()
    process = subprocess.Popen(
        [*args, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=cwd,
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
