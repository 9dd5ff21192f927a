"""Finding PostgreSQL server binaries: a directory holding initdb, pg_ctl and postgres.

Looks where packages put them, newest major version first, and can insist on one major
version: a cluster only ever runs under the major version that made it (`pgdata/PG_VERSION`).
Also home of `EmbeddedPostgresError`, the one error of the embedded Postgres, so that every
module about it can raise it without an import cycle.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from skiplock.errors import SkiplockError

_SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")

NO_BINARIES = (
    "skiplock: no PostgreSQL server binaries found (initdb, pg_ctl, postgres); install "
    "PostgreSQL (e.g. apt-get install postgresql-15) or set DATABASE_URL"
)


class EmbeddedPostgresError(SkiplockError):
    """The embedded Postgres could not be found, initialised, started or stopped."""


def find_postgres_bindir(required_major: int | None = None) -> Path:
    """The first directory holding initdb, pg_ctl and postgres (of `required_major`, if set).

    Looks where packages put them: `pg_config --bindir`, Debian's /usr/lib/postgresql/N/bin,
    RHEL's /usr/pgsql-N/bin, /usr/local/pgsql/bin, Homebrew, `initdb` on PATH, and last the
    binaries bundled by the optional `pgserver` wheel. Newest major version first.
    """
    return _find_bindir(required_major, cluster=None)


def find_cluster_bindir(pgdata: Path, major: int) -> Path:
    """Binaries of `major`, the version that made the cluster at `pgdata` (named if none)."""
    return _find_bindir(major, cluster=pgdata)


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
