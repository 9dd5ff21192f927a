"""One PgQueuer worker process for bench/peers/pgqueuer_driver.py.

    python pgqueuer_worker.py DSN STARTS_FILE READY_FILE --batch-size B

Runs `pgqueuer.run(factory, batch_size=B)`, documented as running a worker "as `pgq run`
does, without the CLI", on uvloop as `pgq run` does, with the pgqueuer logger at warning.
(`pgq run` itself cannot start in this venv: with typer 0.29 its --log-level option reaches
setup_fancy_logger as a str and every start dies with AttributeError: 'str' object has no
attribute 'name'.) `pgqueuer.run` handles SIGTERM/SIGINT as `pgq run` does: stop dequeuing,
let running jobs finish, flush the buffered completions, close.

The factory yields a PgQueuer on one asyncpg connection with a single no-op entrypoint whose
handler appends "job_id time.time()" to STARTS_FILE as it starts. Once its LISTEN is proven
live by a NOTIFY round trip through PgQueuer's own listener health check, it writes
time.time() to READY_FILE (via a rename, so the driver never reads half a file).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import asyncpg
import pgqueuer
import uvloop
from pgqueuer import PgQueuer
from pgqueuer.errors import FailingListenerError
from pgqueuer.models import Job

ENTRYPOINT = "bench_noop"


async def announce_ready(pgq: PgQueuer, ready_file: str) -> None:
    """Write READY_FILE once a NOTIFY sent now reaches this worker's listener."""
    while True:
        with contextlib.suppress(FailingListenerError):
            await pgq.qm.listener_healthy(timeout=timedelta(seconds=0.05))
            break
    partial = f"{ready_file}.partial"
    with open(partial, "w") as f:
        f.write(f"{time.time():.6f}\n")
    os.replace(partial, ready_file)


@asynccontextmanager
async def create(dsn: str, starts_file: str, ready_file: str) -> AsyncIterator[PgQueuer]:
    connection = await asyncpg.connect(dsn)
    pgq = PgQueuer.from_asyncpg_connection(connection)
    # Line-buffered: one write(2) per job, so the driver can read the file while we run.
    with open(starts_file, "a", buffering=1) as starts:

        @pgq.entrypoint(ENTRYPOINT)
        async def noop(job: Job) -> None:
            started = time.time()
            starts.write(f"{job.id} {started:.6f}\n")

        ready = asyncio.create_task(announce_ready(pgq, ready_file))
        try:
            yield pgq
        finally:
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ready
            await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="One PgQueuer worker for the peer benchmark.")
    parser.add_argument("dsn")
    parser.add_argument("starts_file")
    parser.add_argument("ready_file")
    parser.add_argument("--batch-size", type=int, required=True)
    args = parser.parse_args()
    logging.getLogger("pgqueuer").setLevel(logging.WARNING)
    factory = functools.partial(create, args.dsn, args.starts_file, args.ready_file)
    uvloop.run(pgqueuer.run(factory, batch_size=args.batch_size))


if __name__ == "__main__":
    main()
