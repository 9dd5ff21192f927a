"""The procrastinate app of the side-by-side benchmark (driver: procrastinate_driver.py).

Worker processes load it with `procrastinate --app procrastinate_app.app worker`, with this
directory on PYTHONPATH, and configure it through the environment:

- BENCH_DATABASE_URL: the database (libpq conninfo or URL);
- BENCH_POOL_SIZE: if set, the connector's pool size (min_size = max_size); otherwise
  psycopg_pool's default (4 connections);
- BENCH_STAMP_DIR: where the handler appends "<i> <time.time()>" lines, one file per process.

The driver imports it too, for the task, and swaps in its own connector.
"""

from __future__ import annotations

import os
import time
from typing import Any

from procrastinate import App, PsycopgConnector

QUEUE = "bench"  # what the workers listen to
HOLD_QUEUE = "bench_hold"  # where the drain parks its jobs until it releases them


def connector(url: str, pool_size: int | None = None) -> PsycopgConnector:
    pool: dict[str, Any] = {"conninfo": url}
    if pool_size:
        pool |= {"min_size": pool_size, "max_size": pool_size}
    return PsycopgConnector(**pool)


def _env_pool_size() -> int | None:
    size = os.environ.get("BENCH_POOL_SIZE")
    return int(size) if size else None


app = App(connector=connector(os.environ.get("BENCH_DATABASE_URL", ""), _env_pool_size()))

_stamp_fd: int | None = None


def _stamp(i: int | None, started: float) -> None:
    global _stamp_fd
    if _stamp_fd is None:
        path = os.path.join(os.environ["BENCH_STAMP_DIR"], f"{os.getpid()}.txt")
        _stamp_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_stamp_fd, f"{i} {started:.6f}\n".encode())


@app.task(name="noop", queue=QUEUE)
async def noop(i: int | None = None) -> None:
    """No work: records when it started (the wake-up workload numbers its jobs with i)."""
    _stamp(i, time.time())
