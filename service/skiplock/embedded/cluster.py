"""A local PostgreSQL cluster run from the system's server binaries.

`skiplock dev` keeps one in its data dir between runs; the test harness starts a throwaway one
with fsync off. The server listens on a unix socket only (`listen_addresses=''`), in a socket
directory of its own, so it never collides with another server's TCP port.

Postgres refuses to run as root. Run as root, every server command runs as the `postgres` OS
user (see pgprocess), which then owns the cluster and the socket directory; the log file is
opened by us and handed to the server as its stdout, so it may live where that user cannot
write.

A cluster remembers which major version made it (`pgdata/PG_VERSION`): an existing cluster is
only ever started with binaries of that major version (see pgbinaries).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import signal
import time
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self
from urllib.parse import quote

import psycopg

from skiplock.embedded.binaries import (
    EmbeddedPostgresError,
    find_cluster_bindir,
    find_postgres_bindir,
)
from skiplock.embedded.process import (
    SERVER_USER,
    Account,
    Postmaster,
    can_access,
    hand_over,
    run_command,
    running_postmaster,
    server_account,
    wait_gone,
)

# Re-exported: callers import the error and the binary lookup from here.
__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError", "find_postgres_bindir"]

FALLBACK_ROOT = Path("/var/lib/skiplock")
MAX_CONNECTIONS = 200
# sun_path holds 108 bytes on Linux and 104 on macOS; 100 leaves room for the NUL on both.
MAX_SOCKET_PATH = 100
# pg_ctl hands the server options to /bin/sh, and unix_socket_directories is a list split on
# commas and spaces: a socket directory outside this alphabet goes to /tmp instead of quoting.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9._/+-]+")
_LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d [\d:.]+ \S+ \[\d+\] ", re.MULTILINE)
# A fast shutdown waits for clients to be disconnected and a checkpoint to be written; a
# minute covers a large dirty cache. Past it we escalate to an immediate shutdown, then KILL.
_FAST_SHUTDOWN_SECONDS = 60.0
_IMMEDIATE_SHUTDOWN_SECONDS = 10.0


class EmbeddedPostgres:
    """One PostgreSQL cluster in `pgdata`, started and stopped with the system's binaries."""

    def __init__(
        self,
        pgdata: Path,
        *,
        port: int = 5432,
        unsafe_fast: bool = False,
        log_file: Path | None = None,
    ) -> None:
        if not 1 <= port <= 65535:
            raise EmbeddedPostgresError(f"skiplock: port {port} is not a TCP port number (1-65535)")
        self.pgdata = Path(os.path.abspath(pgdata))
        self.port = port
        self.unsafe_fast = unsafe_fast
        self.log_file = Path(os.path.abspath(log_file or self.pgdata.parent / "postgres.log"))
        self.socket_dir = _socket_dir_for(self.pgdata, port)
        # Whether start() launched the server (False: it adopted one already running). Only
        # a server this object launched is ours to stop when done (see owned_stop).
        self.launched = False

    @classmethod
    def for_data_dir(cls, data_dir: Path, **kw: Any) -> Self:
        """The cluster of `skiplock dev --data-dir data_dir`: data_dir/pgdata.

        Run as root, where the postgres OS user cannot reach data_dir, the cluster lives in
        /var/lib/skiplock/<hash of data_dir>/pgdata instead: one per data dir, found again on
        every run (a cluster already made in either place is kept there).
        """
        data_dir = Path(os.path.realpath(data_dir))
        local = data_dir / "pgdata"
        home = FALLBACK_ROOT / _path_hash(data_dir)
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            account = server_account()
            if account is None:
                return cls(local, **kw)
            # Only traversal is needed: we create pgdata and run/ ourselves and hand them over.
            reachable = can_access(account, data_dir, "-x")
            if reachable and (_is_cluster(local) or not _is_cluster(home / "pgdata")):
                return cls(local, **kw)
            for folder in (FALLBACK_ROOT, home):
                folder.mkdir(exist_ok=True)
                folder.chmod(0o755)  # whatever our umask: the postgres user must traverse it
        except OSError as exc:
            raise EmbeddedPostgresError(
                f"skiplock: cannot create {exc.filename} ({exc.strerror}); choose another "
                "--data-dir"
            ) from None
        return cls(home / "pgdata", **kw)

    def url(self, dbname: str = "postgres") -> str:
        """A libpq URI for `dbname` on this cluster's unix socket, as the superuser."""
        host = quote(str(self.socket_dir), safe="")
        return f"postgresql://{SERVER_USER}@/{quote(dbname, safe='')}?host={host}&port={self.port}"

    def is_running(self) -> bool:
        return running_postmaster(self.pgdata) is not None

    def start(self, timeout: float = 60) -> None:
        """Start the cluster (initdb first if new) and wait until it accepts connections.

        A server already running on pgdata (say, left behind by a crashed `skiplock dev`) is
        adopted, with the port and socket directory it was started with.
        """
        deadline = time.monotonic() + timeout
        running = running_postmaster(self.pgdata)
        if running is not None and running.status == "stopping":
            wait_gone(running.pid, self.pgdata, deadline)
            running = None
        if running is None:
            self._launch(deadline)
            self.launched = True
        else:
            self._adopt(running)
        self._wait_until_accepting(deadline, timeout)

    def owned_stop(self) -> bool:
        """stop() the server if start() launched it; an adopted one is left running, since
        whoever started it (another `skiplock dev`, a person) still relies on it. True when
        stopped."""
        if not self.launched:
            return False
        self.stop()
        self.launched = False
        return True

    def stop(self) -> None:
        """Fast shutdown (what `pg_ctl stop -m fast -w` does); returns once the server is gone.

        We signal the postmaster directly rather than run pg_ctl, so that a cluster adopted
        from an earlier run stops even if its binaries are gone. The postmaster exits only
        after all its children, so once it is gone no process of this cluster remains.
        """
        running = running_postmaster(self.pgdata)
        if running is None:
            return
        steps = (
            (signal.SIGINT, _FAST_SHUTDOWN_SECONDS),  # fast: disconnect clients, checkpoint
            (signal.SIGQUIT, _IMMEDIATE_SHUTDOWN_SECONDS),  # immediate: no checkpoint
            (signal.SIGKILL, _IMMEDIATE_SHUTDOWN_SECONDS),
        )
        for signum, seconds in steps:
            try:
                os.kill(running.pid, signum)
            except ProcessLookupError:
                pass
            except PermissionError:
                raise EmbeddedPostgresError(
                    f"skiplock: not allowed to stop PostgreSQL (PID {running.pid}) on "
                    f"{self.pgdata}; run skiplock as the OS user that started it, or as root"
                ) from None
            if wait_gone(running.pid, self.pgdata, time.monotonic() + seconds):
                return
        raise EmbeddedPostgresError(
            f"skiplock: PostgreSQL (PID {running.pid}) on {self.pgdata} survived SIGKILL; "
            "check the process with ps"
        )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- starting ---------------------------------------------------------------------

    def _launch(self, deadline: float) -> None:
        major = self._cluster_major()
        bindir = (
            find_postgres_bindir() if major is None else find_cluster_bindir(self.pgdata, major)
        )
        account = server_account()
        try:
            self._prepare_directories(bindir, account)
            # running_postmaster found no server of ours behind a postmaster.pid left here;
            # if its pid now belongs to another live process, postgres would refuse to start.
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
            if major is None:
                self._initdb(bindir, account, deadline)
            # 0600: a server log quotes failing statements, and so data.
            fd = os.open(self.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with open(fd, "ab") as log:
                self._pg_ctl_start(bindir, account, deadline, log)
        except OSError as exc:
            raise EmbeddedPostgresError(
                f"skiplock: cannot set up the cluster at {self.pgdata}: {exc.filename}: "
                f"{exc.strerror}; check that path's owner and permissions"
            ) from None

    def _pg_ctl_start(
        self, bindir: Path, account: Account | None, deadline: float, log: BinaryIO
    ) -> None:
        seconds = max(1, int(deadline - time.monotonic()))
        command = [str(bindir / "pg_ctl"), "start", "-s", "-D", str(self.pgdata), "-w"]
        command += ["-t", str(seconds), "-o", shlex.join(self._server_options())]
        # No -l: pg_ctl gets our open log as stdout, which the server inherits, so the postgres
        # user need not be able to reach the log's path. -s keeps pg_ctl's chatter out of the
        # log; its errors go to stderr, which we keep.
        log.flush()
        since = log.tell()
        status, errors = run_command(command, account, timeout=seconds + 10, output=log)
        if status == 0:
            return
        with contextlib.suppress(EmbeddedPostgresError):
            self.stop()  # pg_ctl gave up waiting; do not leave a half-started server
        said = _first_line(errors) or f"pg_ctl exit {status}"
        raise EmbeddedPostgresError(
            f"skiplock: PostgreSQL did not start on {self.pgdata} ({said}); "
            f"server log {self.log_file} ends: {_tail(self.log_file, since)}"
        )

    def _server_options(self) -> list[str]:
        settings = {
            "listen_addresses": "",  # unix socket only: no TCP port to collide on
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "max_connections": str(MAX_CONNECTIONS),
        }
        if self.unsafe_fast:
            # Throwaway test clusters: a crash may lose or corrupt data, which nobody keeps.
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        options: list[str] = []
        for name, value in settings.items():
            options += ["-c", f"{name}={value}"]
        return options

    def _prepare_directories(self, bindir: Path, account: Account | None) -> None:
        """Create pgdata and the socket directory, owned by whoever runs the server."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        _make_private_dir(self.socket_dir, account)
        if account is None:
            return
        if not can_access(account, bindir / "postgres", "-x"):
            raise EmbeddedPostgresError(
                f"skiplock: the {account.name} OS user cannot run {bindir / 'postgres'}; "
                "make its directories traversable (chmod o+x) or install PostgreSQL system-wide"
            )
        if not can_access(account, self.pgdata.parent, "-x"):
            raise EmbeddedPostgresError(
                f"skiplock: the {account.name} OS user cannot reach {self.pgdata.parent}; "
                "as root, keep the cluster in a directory it can traverse (chmod o+x), or use "
                "EmbeddedPostgres.for_data_dir"
            )
        hand_over(self.pgdata, account)

    def _initdb(self, bindir: Path, account: Account | None, deadline: float) -> None:
        command = [str(bindir / "initdb"), "-D", str(self.pgdata), "-U", SERVER_USER]
        # C collation: byte order, the same on every machine, and the fastest.
        command += ["--auth=trust", "--encoding=UTF8", "--no-locale"]
        if self.unsafe_fast:
            command.append("--no-sync")
        status, output = run_command(
            command, account, timeout=max(10.0, deadline - time.monotonic())
        )
        if status != 0:
            raise EmbeddedPostgresError(
                f"skiplock: initdb failed for {self.pgdata} (exit {status}): "
                f"{_last_lines(output)}; fix that, or remove the directory to start afresh"
            )

    def _adopt(self, running: Postmaster) -> None:
        if not running.socket_dir:
            raise EmbeddedPostgresError(
                f"skiplock: a PostgreSQL server (PID {running.pid}) already runs on "
                f"{self.pgdata} without a unix socket; stop it (pg_ctl stop -D {self.pgdata})"
            )
        self.socket_dir = Path(running.socket_dir)
        if running.port is not None:
            self.port = running.port

    def _wait_until_accepting(self, deadline: float, timeout: float) -> None:
        while True:
            try:
                with psycopg.connect(self.url(), autocommit=True, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
            if time.monotonic() >= deadline or not self.is_running():
                raise EmbeddedPostgresError(
                    f"skiplock: PostgreSQL on {self.pgdata} does not accept connections after "
                    f"{timeout:g} s ({reason}); server log {self.log_file} ends: "
                    f"{_tail(self.log_file, since=0)}"
                )
            time.sleep(0.05)

    # --- what is on disk --------------------------------------------------------------

    def _cluster_major(self) -> int | None:
        """The major version that made this cluster; None if there is no cluster yet."""
        try:
            text = (self.pgdata / "PG_VERSION").read_text().strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise EmbeddedPostgresError(
                f"skiplock: cannot read {self.pgdata / 'PG_VERSION'} ({exc.strerror}); run "
                "skiplock as the OS user that owns the cluster"
            ) from None
        if not text.isdigit():
            raise EmbeddedPostgresError(
                f"skiplock: the cluster at {self.pgdata} was made by PostgreSQL {text}, which "
                "skiplock does not run; pg_upgrade it or use another data dir"
            )
        return int(text)


# --- helpers -----------------------------------------------------------------------------


def _path_hash(path: Path) -> str:
    return hashlib.sha256(os.fsencode(os.path.realpath(path))).hexdigest()[:16]


def _is_cluster(pgdata: Path) -> bool:
    return (pgdata / "PG_VERSION").is_file()


def _socket_dir_for(pgdata: Path, port: int) -> Path:
    """pgdata's sibling run/, or /tmp/skiplock-<hash> when that path is too long or odd."""
    preferred = pgdata.parent / "run"
    longest = os.fsencode(preferred / f".s.PGSQL.{port}.lock")
    if len(longest) < MAX_SOCKET_PATH and _PLAIN_PATH.fullmatch(str(preferred)):
        return preferred
    return Path("/tmp") / f"skiplock-{_path_hash(pgdata)}"  # noqa: S108 (checked below)


def _make_private_dir(path: Path, account: Account | None) -> None:
    """A 0700 directory owned by the server's user; refuses one someone else planted."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    owners = {os.geteuid()} | ({account.uid} if account else set())
    if path.is_symlink() or not path.is_dir() or info.st_uid not in owners:
        raise EmbeddedPostgresError(
            f"skiplock: {path} is not a directory of ours (a symlink, or another user's); "
            "remove it and start again"
        )
    if account is not None:
        os.chown(path, account.uid, account.gid)
    path.chmod(0o700)


def _tail(log_file: Path, since: int = 0, lines: int = 3) -> str:
    """The last lines the server wrote to its log after byte `since`, on one line."""
    try:
        with log_file.open("rb") as log:
            log.seek(max(since, log.seek(0, os.SEEK_END) - 8192))
            text = log.read().decode(errors="replace")
    except OSError as exc:
        return f"(cannot read it: {exc.strerror})"
    # "2024-05-01 10:00:00.123 UTC [4242] FATAL:  …": the timestamp and pid say nothing here.
    text = _LOG_PREFIX.sub("", text)
    return _last_lines(text, lines) or "(nothing)"


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _last_lines(text: str, lines: int = 3) -> str:
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept)[-600:]
