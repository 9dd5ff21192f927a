"""A local PostgreSQL cluster run from the system's server binaries.

`skiplock dev` keeps one in its data dir between runs; the test harness starts a throwaway one
with fsync off. The server listens on a unix socket only (`listen_addresses=''`), in a socket
directory of its own, so it never collides with another server's TCP port.

Postgres refuses to run as root. Run as root, every server command runs as the `postgres` OS
user, which then owns the cluster and the socket directory; the log file is opened by us and
handed to the server as its stdout, so it may live where that user cannot write.

A cluster remembers which major version made it (`pgdata/PG_VERSION`): an existing cluster is
only ever started with binaries of that major version.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.util
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self
from urllib.parse import quote

import psycopg

from skiplock.errors import SkiplockError

SERVER_USER = "postgres"
FALLBACK_ROOT = Path("/var/lib/skiplock")
MAX_CONNECTIONS = 200
# sun_path holds 108 bytes on Linux and 104 on macOS; 100 leaves room for the NUL on both.
MAX_SOCKET_PATH = 100
# pg_ctl hands the server options to /bin/sh, and unix_socket_directories is a list split on
# commas and spaces: a socket directory outside this alphabet goes to /tmp instead of quoting.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9._/+-]+")
_SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")
_LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d [\d:.]+ \S+ \[\d+\] ", re.MULTILINE)
# A fast shutdown waits for clients to be disconnected and a checkpoint to be written; a
# minute covers a large dirty cache. Past it we escalate to an immediate shutdown, then KILL.
_FAST_SHUTDOWN_SECONDS = 60.0
_IMMEDIATE_SHUTDOWN_SECONDS = 10.0
_POLL_SECONDS = 0.02

NO_BINARIES = (
    "skiplock: no PostgreSQL server binaries found (initdb, pg_ctl, postgres); install "
    "PostgreSQL (e.g. apt-get install postgresql-15) or set DATABASE_URL"
)


class EmbeddedPostgresError(SkiplockError):
    """The embedded Postgres could not be found, initialised, started or stopped."""


# --- finding the server binaries ---------------------------------------------------------


def find_postgres_bindir(required_major: int | None = None) -> Path:
    """The first directory holding initdb, pg_ctl and postgres (of `required_major`, if set).

    Looks where packages put them: `pg_config --bindir`, Debian's /usr/lib/postgresql/N/bin,
    RHEL's /usr/pgsql-N/bin, /usr/local/pgsql/bin, Homebrew, `initdb` on PATH, and last the
    binaries bundled by the optional `pgserver` wheel. Newest major version first.
    """
    return _find_bindir(required_major, cluster=None)


def _find_bindir(required_major: int | None, cluster: Path | None) -> Path:
    seen: set[str] = set()
    others: list[str] = []
    for bindir in _candidate_bindirs():
        key = os.path.realpath(bindir)
        if key in seen or not _has_server_programs(bindir):
            continue
        seen.add(key)
        if required_major is None:
            return bindir
        major = _server_major(bindir)
        if major == required_major:
            return bindir
        others.append(f"{major if major is not None else '?'} in {bindir}")
    if required_major is None:
        raise EmbeddedPostgresError(NO_BINARIES)
    made_by = f"the cluster at {cluster} was made by" if cluster else "need binaries of"
    found = f"found only {', '.join(others)}" if others else "found none"
    raise EmbeddedPostgresError(
        f"skiplock: {made_by} PostgreSQL {required_major} ({found}); a cluster runs only "
        f"under the major version that made it: install postgresql-{required_major}, or "
        "pg_upgrade the cluster, or use another data dir"
    )


def _candidate_bindirs() -> Iterator[Path]:
    pg_config = shutil.which("pg_config")
    if pg_config:
        printed = _output_of([pg_config, "--bindir"])
        if printed:
            yield Path(printed)
    yield from _newest_first("/usr/lib/postgresql/*/bin")
    yield from _newest_first("/usr/pgsql-*/bin")
    yield Path("/usr/local/pgsql/bin")
    yield from _newest_first("/opt/homebrew/opt/postgresql@*/bin")
    yield from _newest_first("/usr/local/opt/postgresql@*/bin")
    initdb = shutil.which("initdb")
    if initdb:
        # /usr/local/bin/initdb is often a symlink; its bindir is where the target lives.
        yield Path(initdb).resolve().parent
    yield from _pgserver_bindirs()


def _pgserver_bindirs() -> Iterator[Path]:
    """The `pgserver` wheel's bundled binaries (pgserver._commands.POSTGRES_BIN_PATH).

    Found with find_spec rather than imported: importing pgserver runs its server-management
    code and warns about XDG_RUNTIME_DIR.
    """
    try:
        spec = importlib.util.find_spec("pgserver")
    except (ImportError, ValueError):
        return
    for location in (spec.submodule_search_locations or []) if spec else []:
        yield Path(location) / "pginstall" / "bin"


def _newest_first(pattern: str) -> list[Path]:
    def major(path: str) -> int:
        found = re.search(r"(\d+)", path)
        return int(found.group(1)) if found else 0

    return [Path(p) for p in sorted(glob.glob(pattern), key=major, reverse=True)]


def _has_server_programs(bindir: Path) -> bool:
    return all(
        (bindir / name).is_file() and os.access(bindir / name, os.X_OK) for name in _SERVER_PROGRAMS
    )


def _server_major(bindir: Path) -> int | None:
    """12 for 'postgres (PostgreSQL) 12.3'; None for 9.x (not supported) or no answer."""
    found = re.search(r"\(PostgreSQL\) (\d+)", _output_of([str(bindir / "postgres"), "--version"]))
    major = int(found.group(1)) if found else None
    return major if major is not None and major >= 10 else None


def _output_of(command: list[str]) -> str:
    try:
        done = subprocess.run(  # noqa: S603 (a path we found, no shell)
            command, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


# --- running commands as the server's OS user --------------------------------------------


@dataclass(frozen=True)
class _Account:
    """The OS user the server runs as when we are root."""

    name: str
    uid: int
    gid: int
    groups: list[int]


def _server_account() -> _Account | None:
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
    return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)


def _server_env() -> dict[str, str]:
    # PGDATA, PGPORT, PGOPTIONS… in our environment must not steer initdb, pg_ctl or postgres.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _run(
    command: list[str], account: _Account | None, *, timeout: float, output: Any = None
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


def _can_access(account: _Account, path: Path, flag: str) -> bool:
    """Whether `account` passes `test FLAG PATH`, checked by running test as that user.

    Asking the kernel as that user covers every ancestor's mode, ACLs and group memberships,
    which guessing from st_mode would not.
    """
    test = shutil.which("test") or "/usr/bin/test"
    try:
        status, _ = _run([test, flag, str(path)], account, timeout=10)
    except EmbeddedPostgresError:
        return False
    return status == 0


# --- the cluster -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Postmaster:
    """What postmaster.pid says about a running server."""

    pid: int
    port: int | None
    socket_dir: str | None
    status: str


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
            account = _server_account()
            if account is None:
                return cls(local, **kw)
            # Only traversal is needed: we create pgdata and run/ ourselves and hand them over.
            reachable = _can_access(account, data_dir, "-x")
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
        return self._running_postmaster() is not None

    def start(self, timeout: float = 60) -> None:
        """Start the cluster (initdb first if new) and wait until it accepts connections.

        A server already running on pgdata (say, left behind by a crashed `skiplock dev`) is
        adopted, with the port and socket directory it was started with.
        """
        deadline = time.monotonic() + timeout
        running = self._running_postmaster()
        if running is not None and running.status == "stopping":
            self._wait_gone(running.pid, deadline)
            running = None
        if running is None:
            self._launch(deadline)
        else:
            self._adopt(running)
        self._wait_until_accepting(deadline, timeout)

    def stop(self) -> None:
        """Fast shutdown (what `pg_ctl stop -m fast -w` does); returns once the server is gone.

        We signal the postmaster directly rather than run pg_ctl, so that a cluster adopted
        from an earlier run stops even if its binaries are gone. The postmaster exits only
        after all its children, so once it is gone no process of this cluster remains.
        """
        running = self._running_postmaster()
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
            if self._wait_gone(running.pid, time.monotonic() + seconds):
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
        bindir = _find_bindir(major, cluster=self.pgdata if major is not None else None)
        account = _server_account()
        try:
            self._prepare_directories(bindir, account)
            # _running_postmaster found no server of ours behind a postmaster.pid left here;
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
        self, bindir: Path, account: _Account | None, deadline: float, log: BinaryIO
    ) -> None:
        seconds = max(1, int(deadline - time.monotonic()))
        command = [str(bindir / "pg_ctl"), "start", "-s", "-D", str(self.pgdata), "-w"]
        command += ["-t", str(seconds), "-o", shlex.join(self._server_options())]
        # No -l: pg_ctl gets our open log as stdout, which the server inherits, so the postgres
        # user need not be able to reach the log's path. -s keeps pg_ctl's chatter out of the
        # log; its errors go to stderr, which we keep.
        log.flush()
        since = log.tell()
        status, errors = _run(command, account, timeout=seconds + 10, output=log)
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

    def _prepare_directories(self, bindir: Path, account: _Account | None) -> None:
        """Create pgdata and the socket directory, owned by whoever runs the server."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        _make_private_dir(self.socket_dir, account)
        if account is None:
            return
        if not _can_access(account, bindir / "postgres", "-x"):
            raise EmbeddedPostgresError(
                f"skiplock: the {account.name} OS user cannot run {bindir / 'postgres'}; "
                "make its directories traversable (chmod o+x) or install PostgreSQL system-wide"
            )
        if not _can_access(account, self.pgdata.parent, "-x"):
            raise EmbeddedPostgresError(
                f"skiplock: the {account.name} OS user cannot reach {self.pgdata.parent}; "
                "as root, keep the cluster in a directory it can traverse (chmod o+x), or use "
                "EmbeddedPostgres.for_data_dir"
            )
        _hand_over(self.pgdata, account)

    def _initdb(self, bindir: Path, account: _Account | None, deadline: float) -> None:
        command = [str(bindir / "initdb"), "-D", str(self.pgdata), "-U", SERVER_USER]
        # C collation: byte order, the same on every machine, and the fastest.
        command += ["--auth=trust", "--encoding=UTF8", "--no-locale"]
        if self.unsafe_fast:
            command.append("--no-sync")
        status, output = _run(command, account, timeout=max(10.0, deadline - time.monotonic()))
        if status != 0:
            raise EmbeddedPostgresError(
                f"skiplock: initdb failed for {self.pgdata} (exit {status}): "
                f"{_last_lines(output)}; fix that, or remove the directory to start afresh"
            )

    def _adopt(self, running: _Postmaster) -> None:
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

    def _running_postmaster(self) -> _Postmaster | None:
        """The server running on pgdata, per postmaster.pid; None if none (or a stale file)."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise EmbeddedPostgresError(
                f"skiplock: cannot read {self.pgdata / 'postmaster.pid'} ({exc.strerror}); run "
                "skiplock as the OS user that owns the cluster"
            ) from None
        # Lines: pid, pgdata, start time, port, socket dir, listen address, shmem key, status.
        fields = [*lines, "", "", "", "", "", "", "", ""]
        if not fields[0].strip().isdigit():
            return None  # being written by a starting server, or garbage
        pid = int(fields[0])
        if not _is_server_of(pid, self.pgdata):
            return None  # stale: the server died without removing its pid file
        port = int(fields[3]) if fields[3].strip().isdigit() else None
        return _Postmaster(pid, port, fields[4].strip() or None, fields[7].strip())

    def _wait_gone(self, pid: int, deadline: float) -> bool:
        while _is_server_of(pid, self.pgdata):
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_SECONDS)
        return True


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


def _make_private_dir(path: Path, account: _Account | None) -> None:
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


def _hand_over(pgdata: Path, account: _Account) -> None:
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
