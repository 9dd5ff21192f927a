"""PgBouncer (Debian's `pgbouncer`, 1.18 here) in front of the test server, as a deployment
runs it: transaction pooling, a small pool, on a free loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from processes import free_port

POOL_SIZE = 3  # server connections per database: far fewer than skiplock's clients


class PgBouncer:
    def __init__(self, server_url: str, directory: Path) -> None:
        self.server = conninfo_to_dict(server_url)
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, database_url: str) -> str:
        """database_url, but through this PgBouncer."""
        return make_conninfo(database_url, host="127.0.0.1", port=str(self.port))

    def start(self) -> None:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        server = " ".join(
            f"{key}={self.server[key]}"
            for key in ("host", "port", "user", "password")
            if self.server.get(key)
        )
        config = self.directory / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = {server}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = any\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {POOL_SIZE}\n"
            "max_client_conn = 500\n"
            "admin_users = postgres, root\n"
            "stats_users = postgres, root\n"
        )
        self.directory.chmod(0o755)
        config.chmod(0o644)
        # PgBouncer refuses to run as root: as root, it drops to the server's OS user.
        run_as = ["-u", "postgres"] if os.geteuid() == 0 else []
        with (self.directory / "pgbouncer.log").open("wb") as log:
            self.process = subprocess.Popen(
                [binary, *run_as, str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(self.log())
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError(f"PgBouncer never listened: {self.log()}")

    def log(self) -> str:
        return (self.directory / "pgbouncer.log").read_text(errors="replace")

    def transactions(self, database: str) -> int:
        """Transactions PgBouncer has passed on for this database (its SHOW STATS)."""
        admin = make_conninfo(
            f"host=127.0.0.1 port={self.port} dbname=pgbouncer",
            user=self.server.get("user") or "postgres",
        )
        with psycopg.connect(admin, autocommit=True, prepare_threshold=None) as conn:
            # The admin console speaks the simple query protocol only.
            result = conn.pgconn.exec_(b"SHOW STATS")
            names = [result.fname(i).decode() for i in range(result.nfields)]
            for row in range(result.ntuples):
                values = {
                    names[i]: (result.get_value(row, i) or b"").decode()
                    for i in range(result.nfields)
                }
                if values["database"] == database:
                    return int(values["total_xact_count"])
        return 0

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
