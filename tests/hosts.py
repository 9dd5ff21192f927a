"""Several skiplock "hosts" on this machine: `serve` and `worker` processes, each with its
own empty working and storage directory (no shared disk), against one database."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from processes import free_port

TESTS = Path(__file__).resolve().parent


@dataclass
class Host:
    """One skiplock process, with its directory (cwd, storage dir, log)."""

    process: subprocess.Popen[bytes]
    directory: Path
    base_url: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return (self.directory / "out.log").read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait(10)


def _environment(database_url: str, directory: Path, env: dict[str, str]) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SKIPLOCK_", "AWS_")) and k != "DATABASE_URL"
    }
    return {
        **base,
        "DATABASE_URL": database_url,
        "SKIPLOCK_STORAGE_DIR": str(directory / "storage"),
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        **env,
    }


def _spawn(args: list[str], database_url: str, directory: Path, env: dict[str, str]) -> Host:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "out.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "skiplock", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_environment(database_url, directory, env),
            cwd=directory,
        )
    return Host(process, directory)


def start_worker(
    database_url: str, directory: Path, *args: str, env: dict[str, str] | None = None
) -> Host:
    """`skiplock worker --handlers storage_handlers ARGS`, ready once it says so."""
    host = _spawn(
        ["worker", "--handlers", "storage_handlers", *args], database_url, directory, env or {}
    )
    _wait(host, lambda: "worker started" in host.log())
    return host


def start_serve(database_url: str, directory: Path, env: dict[str, str] | None = None) -> Host:
    port = free_port()
    host = _spawn(
        ["serve", "--port", str(port), "--handlers", "storage_handlers"],
        database_url,
        directory,
        env or {},
    )
    host.base_url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{host.base_url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    _wait(host, healthy)
    return host


def _wait(host: Host, ready: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if host.process.poll() is not None:
            raise AssertionError(f"skiplock exited at start: {host.log()}")
        if ready():  # type: ignore[operator]
            return
        time.sleep(0.05)
    host.kill()
    raise AssertionError(f"skiplock never got ready: {host.log()}")


def new_dir(root: Path, name: str) -> Path:
    """An empty directory of a 'host' of its own."""
    path = root / f"{name}-{uuid.uuid4().hex[:6]}"
    path.mkdir(parents=True)
    return path
