"""`skiplock serve` as a real process: SIGTERM with open streams, and a Postgres restart
under live streams."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from cli_helpers import REPO
from processes import free_port
from skiplock import keys
from sse_client import open_stream, until

TESTS = Path(__file__).resolve().parent


def start_serve(database_url: str, tmp_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SKIPLOCK_STORAGE_DIR": str(tmp_path / "storage"),
        "PYTHONPATH": str(TESTS),
    }
    command = [sys.executable, "-m", "skiplock", "serve", "--port", str(port)]
    with (tmp_path / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [*command, "--handlers", "job_handlers"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError((tmp_path / "serve.log").read_text())


async def test_sigterm_ends_open_streams_within_a_second_and_exits_0(
    database_url: str, tmp_path: Path
) -> None:
    new, process, base = await serve_for_a_company(database_url, tmp_path)
    try:
        headers = {"Authorization": f"Bearer {new.api_key}"}
        async with httpx.AsyncClient(base_url=base) as client:
            url = f"/companies/{new.company_id}/events"
            async with (
                open_stream(client, url, headers=headers) as first,
                open_stream(client, url, headers=headers) as second,
            ):
                assert first.status_code == second.status_code == 200
                process.send_signal(signal.SIGTERM)
                sent = time.monotonic()
                await asyncio.wait_for(first.ended.wait(), 5)
                await asyncio.wait_for(second.ended.wait(), 5)
                assert time.monotonic() - sent < 2.0  # SPEC: within a second (2x slack)
        assert await asyncio.to_thread(process.wait, 10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def serve_for_a_company(
    url: str, tmp_path: Path
) -> tuple[keys.NewKey, subprocess.Popen[bytes], str]:
    """A company with its key, and `skiplock serve` on that database."""
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    async with conn:
        new = await keys.create_company(conn, "acme")
    process, base = start_serve(url, tmp_path)
    return new, process, base


@pytest.fixture
def outage(own_cluster: Any) -> Iterator[tuple[Any, str]]:
    url = own_cluster.url("outage")
    with psycopg.connect(url, autocommit=True) as setup:
        setup.execute(
            "TRUNCATE skiplock.content_jobs, skiplock.content_job_events, skiplock.assets, "
            "skiplock.stream_tokens, skiplock.api_keys, skiplock.companies CASCADE"
        )
    yield own_cluster, url


@pytest.mark.slow
async def test_postgres_restart_mid_stream_loses_no_event(
    outage: tuple[Any, str], tmp_path: Path
) -> None:
    pg, url = outage
    new, process, base = await serve_for_a_company(url, tmp_path)
    headers = {"Authorization": f"Bearer {new.api_key}"}
    events_url = f"/companies/{new.company_id}/events"

    def add_jobs(n: int) -> None:
        with psycopg.connect(url, autocommit=True) as c:
            for _ in range(n):
                c.execute("SELECT skiplock.enqueue_content_job(%s, 'noop')", (new.company_id,))

    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            received: list[int] = []
            async with open_stream(client, events_url, headers=headers) as stream:
                await asyncio.to_thread(add_jobs, 3)
                await until(lambda: len(stream.events()) == 3)
                await asyncio.to_thread(pg.stop)
                await asyncio.to_thread(pg.start)
                await asyncio.to_thread(add_jobs, 3)
                # The stream either carries on (the notifier reconnected) or ends; a client
                # that resumes from its last id must end up with every event exactly once.
                await until(lambda: len(stream.events()) == 6 or stream.ended.is_set(), 20)
                received = stream.ids()
            if len(received) < 6:
                resume = {**headers, "Last-Event-ID": str(received[-1])}
                async with open_stream(client, events_url, headers=resume) as resumed:
                    await until(lambda: len(received) + len(resumed.events()) >= 6, 20)
                    received += resumed.ids()
        with psycopg.connect(url, autocommit=True) as c:
            stored = [
                r[0]
                for r in c.execute("SELECT id FROM skiplock.content_job_events ORDER BY xid, id")
            ]
        assert received == stored and len(stored) == 6
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)


@pytest.mark.slow
async def test_database_down_is_503_and_the_api_recovers(
    outage: tuple[Any, str], tmp_path: Path
) -> None:
    pg, url = outage
    new, process, base = await serve_for_a_company(url, tmp_path)
    headers = {"Authorization": f"Bearer {new.api_key}"}
    jobs = f"/companies/{new.company_id}/content-jobs"
    body = {"jobType": "noop"}
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            assert (await client.post(jobs, json=body, headers=headers)).status_code == 202
            await asyncio.to_thread(pg.stop)
            started = time.monotonic()
            down = await client.post(jobs, json=body, headers=headers)
            assert down.status_code == 503, down.text
            assert down.json()["error"]["code"] == "database_unavailable"
            assert time.monotonic() - started < 10
            assert (await client.get("/healthz")).status_code == 503
            listed = await client.get(jobs, headers=headers)
            assert listed.status_code == 503
            await asyncio.to_thread(pg.start)
            deadline = time.monotonic() + 20
            while (await client.get(jobs, headers=headers)).status_code != 200:
                assert time.monotonic() < deadline, "the API did not recover"
                await asyncio.sleep(0.2)
            assert (await client.post(jobs, json=body, headers=headers)).status_code == 202
        assert "Traceback" not in (tmp_path / "serve.log").read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
