"""`skiplock dev`: API and a worker in one process, on an embedded Postgres, with no set-up.

The cluster lives in DATA_DIR/pgdata (or under /var/lib/skiplock when run as root and the
postgres OS user cannot reach DATA_DIR), assets in DATA_DIR/storage. A `dev` company and its
key are made on the first run; the key is kept in DATA_DIR/dev-api-key (mode 0600), so every
run over the same data dir prints the same one. Ctrl-C stops the API and the worker, then Postgres.

One dev per data dir: DATA_DIR/dev.lock is held (flock) while dev runs, and a second run is
refused with one line. Only a Postgres this process started is stopped on exit; one it found
running (left by a crashed run, or started by a person) is adopted and left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection

from skiplock import db, handlers, keys, logs, store
from skiplock.cli.support import check_at_start
from skiplock.embedded import EmbeddedPostgres
from skiplock.errors import ConfigError
from skiplock.settings import DEFAULT_STORAGE_DIR, Settings
from skiplock.worker import Worker, WorkerOptions

DEV_COMPANY = "dev"
KEY_FILE = "dev-api-key"
LOCK_FILE = "dev.lock"
DEV_CONCURRENCY = 4
DEV_GRACE = 3.0


def run_dev(settings: Settings, *, data_dir: Path, host: str, port: int) -> int:
    from skiplock.api import server as api_server

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    if settings.storage_dir == DEFAULT_STORAGE_DIR:
        settings = settings.with_overrides(storage_dir=data_dir / "storage")
    with data_dir_lock(data_dir):
        sockets = api_server.listen(host, port)  # a taken port: one line, before Postgres
        try:
            return _run_locked(settings, data_dir, host, port, sockets)
        finally:
            for sock in sockets:
                sock.close()


def _run_locked(
    settings: Settings, data_dir: Path, host: str, port: int, sockets: list[socket.socket]
) -> int:
    embedded: EmbeddedPostgres | None = None
    if settings.database_url is None:
        embedded = EmbeddedPostgres.for_data_dir(data_dir, log_file=data_dir / "postgres.log")
        _say(f"pgdata: {embedded.pgdata}")
        embedded.start()
        if not embedded.launched:
            _say("postgres: adopted a server already running there; it is left running on exit")
        settings = settings.with_overrides(database_url=embedded.url("postgres"))
    try:
        logs.configure(settings.log_level)
        handlers.load_handler_modules(settings.handlers)
        database_url = settings.require_database_url()
        db.migrate(settings.require_listen_url())
        asyncio.run(check_at_start(settings))
        company_id, api_key = asyncio.run(_ensure_dev_key(database_url, data_dir / KEY_FILE))
        announce = [
            f"url: http://{host}:{port}",
            f"companyId: {company_id}",
            f"apiKey: {api_key}",
            f"database: {database_url}",
            "ready; press Ctrl-C to stop",
        ]
        _serve(settings, sockets, announce)
        return 0
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how dev is meant to end
    finally:
        if embedded is not None:
            embedded.owned_stop()  # never a server we adopted: someone else relies on it


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on DATA_DIR/dev.lock while dev runs. A second dev over the same
    data dir would share (adopt) this one's Postgres; refused instead, with one line. The
    kernel drops a flock when its process dies, even by SIGKILL, so no stale lock is left."""
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise ConfigError(
                f"skiplock: another skiplock dev (pid {holder}) is running on {data_dir}; "
                "stop it first, or pass another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _say(line: str) -> None:
    print(line, flush=True)


async def _ensure_dev_key(database_url: str, key_file: Path) -> tuple[str, str]:
    """The dev company's id and key: the saved key if it still resolves, else a new one."""
    conn = await db.connect_async(database_url)
    async with conn:
        saved = key_file.read_text().strip() if key_file.exists() else ""
        resolved = await keys.resolve_key(conn, saved) if saved else None
        if resolved is not None:
            return str(resolved.company_id), saved
        company_id = await _dev_company(conn)
        new = await keys.create_key(conn, company_id)
    _write_private(key_file, new.api_key)
    return str(new.company_id), new.api_key


async def _dev_company(conn: AsyncConnection[Any]) -> Any:
    found = await store.find_company_by_name(conn, DEV_COMPANY)
    if found is not None:
        return found["id"]
    return (await store.create_company(conn, DEV_COMPANY))["id"]


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text + "\n")


def _serve(settings: Settings, sockets: list[socket.socket], announce: list[str]) -> None:
    """Serve on the bound sockets until Ctrl-C or SIGTERM, printing `announce` once ready."""
    from skiplock.api import server as api_server
    from skiplock.api.app import create_app

    closing = asyncio.Event()
    app = create_app(settings, closing=closing)
    host, port = sockets[0].getsockname()[:2]
    server = api_server.QuietServer(api_server.config(app, host, port))

    async def serve() -> None:
        worker = Worker(settings, WorkerOptions(concurrency=DEV_CONCURRENCY, grace=DEV_GRACE))

        def stop() -> None:  # Ctrl-C or SIGTERM: stop serving and working
            closing.set()
            server.should_exit = True
            worker.stop()

        api_server.on_stop_signals(stop)
        serving = asyncio.create_task(server.serve(sockets=sockets))
        working = asyncio.create_task(worker.run())
        while not (server.started and worker.started.is_set()):
            if serving.done() or working.done():
                break
            await asyncio.sleep(0.02)
        if server.started and worker.started.is_set():
            for line in announce:
                _say(line)
        # Whichever ends first (a signal, or a failure to start) ends the other.
        await asyncio.wait({serving, working}, return_when="FIRST_COMPLETED")
        server.should_exit = True
        worker.stop()
        await asyncio.gather(serving, working)

    asyncio.run(serve())
