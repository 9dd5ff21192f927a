"""The server as OS processes: the user they run as, and which process is our server.

Postgres refuses to run as root. Run as root, every server program runs as the `postgres` OS
user, which then owns the cluster; `can_access` asks the kernel, as that user, what it may
reach. Server programs never see our PG* environment variables.

A running server names itself in `pgdata/postmaster.pid`; a pid file left behind by a crash,
whose pid may now belong to another process, is told apart by asking /proc what that pid is.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skiplock.embedded.binaries import EmbeddedPostgresError

SERVER_USER = "postgres"
_POLL_SECONDS = 0.02

# --- running commands as the server's OS user --------------------------------------------


@dataclass(frozen=True)
class Account:
    """The OS user the server runs as when we are root."""

    name: str
    uid: int
    gid: int
    groups: list[int]


def server_account() -> Account | None:
    """None when we may run the server ourselves; the `postgres` user when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise EmbeddedPostgresError(
            f"skiplock: running as root, but there is no '{SERVER_USER}' OS user to run "
            "PostgreSQL as (it refuses to run as root); create it (useradd --system "
            "postgres) or run skiplock as another user"
        ) from None
    # Without extra_groups the child would keep root's supplementary groups.
    groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)


def _server_env() -> dict[str, str]:
    # PGDATA, PGPORT, PGOPTIONS… in our environment must not steer initdb, pg_ctl or postgres.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def run_command(
    command: list[str], account: Account | None, *, timeout: float, output: Any = None
) -> tuple[int, str]:
    """Run a server program (as `account`, if set); its exit status and what it printed.

    With `output`, stdout goes there and only stderr is returned.
    """
    with tempfile.TemporaryFile() as captured:
        # A file, not a pipe: a server started by pg_ctl must never hold our pipe open.
        try:
            done = subprocess.run(  # noqa: S603 (our own argument list, no shell)
                command,
                stdin=subprocess.DEVNULL,
                stdout=captured if output is None else output,
                stderr=captured,
                cwd="/",  # a directory every user can read; the server chdirs to pgdata itself
                env=_server_env(),
                timeout=timeout,
                check=False,
                user=account.uid if account else None,
                group=account.gid if account else None,
                extra_groups=account.groups if account else None,
            )
        except subprocess.TimeoutExpired:
            raise EmbeddedPostgresError(
                f"skiplock: {Path(command[0]).name} did not finish within {timeout:.0f} s; "
                "check the machine's load and the server log"
            ) from None
        except OSError as exc:
            raise EmbeddedPostgresError(
                f"skiplock: cannot run {command[0]} ({exc.strerror}); check the PostgreSQL "
                "installation"
            ) from None
        captured.seek(0)
        return done.returncode, captured.read().decode(errors="replace")


def can_access(account: Account, path: Path, flag: str) -> bool:
    """Whether `account` passes `test FLAG PATH`, checked by running test as that user.

    Asking the kernel as that user covers every ancestor's mode, ACLs and group memberships,
    which guessing from st_mode would not.
    """
    test = shutil.which("test") or "/usr/bin/test"
    try:
        status, _ = run_command([test, flag, str(path)], account, timeout=10)
    except EmbeddedPostgresError:
        return False
    return status == 0


def hand_over(pgdata: Path, account: Account) -> None:
    """Make `account` own pgdata; a cluster of a third user is refused, not taken over."""
    owner = pgdata.stat().st_uid
    if owner == account.uid:
        return
    if owner != 0:
        raise EmbeddedPostgresError(
            f"skiplock: the cluster at {pgdata} belongs to OS user "
            f"{_user_name(owner)}; run skiplock as that user, or use another data dir"
        )
    # Owned by root: we made it (a fresh directory, or a run that died before chown).
    for folder, _, files in os.walk(pgdata):
        os.chown(folder, account.uid, account.gid)
        for name in files:
            os.chown(os.path.join(folder, name), account.uid, account.gid)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


# --- the running server ------------------------------------------------------------------


@dataclass(frozen=True)
class Postmaster:
    """What postmaster.pid says about a running server."""

    pid: int
    port: int | None
    socket_dir: str | None
    status: str


def running_postmaster(pgdata: Path) -> Postmaster | None:
    """The server running on pgdata, per postmaster.pid; None if none (or a stale file)."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise EmbeddedPostgresError(
            f"skiplock: cannot read {pgdata / 'postmaster.pid'} ({exc.strerror}); run "
            "skiplock as the OS user that owns the cluster"
        ) from None
    # Lines: pid, pgdata, start time, port, socket dir, listen address, shmem key, status.
    fields = [*lines, "", "", "", "", "", "", "", ""]
    if not fields[0].strip().isdigit():
        return None  # being written by a starting server, or garbage
    pid = int(fields[0])
    if not _is_server_of(pid, pgdata):
        return None  # stale: the server died without removing its pid file
    port = int(fields[3]) if fields[3].strip().isdigit() else None
    return Postmaster(pid, port, fields[4].strip() or None, fields[7].strip())


def wait_gone(pid: int, pgdata: Path, deadline: float) -> bool:
    """Whether the server `pid` of `pgdata` exited before `deadline` (time.monotonic)."""
    while _is_server_of(pid, pgdata):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_SECONDS)
    return True


def _is_server_of(pid: int, pgdata: Path) -> bool:
    """Whether `pid` is a live postgres process of the cluster in `pgdata`."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return True  # no /proc (macOS): the pid is alive, trust the pid file
    if stat.rpartition(")")[2].split()[:1] == ["Z"]:
        # A zombie has exited. If we are its parent (PID 1 in a container), reap it.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    try:
        # Every postgres process runs in its data directory: this tells our server from a
        # pid reused after a crash, even by another cluster's postgres.
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return comm == "postgres"  # another user's process: the name is all we can see
    return comm == "postgres" and cwd == os.path.realpath(pgdata)
