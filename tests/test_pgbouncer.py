"""Through PgBouncer in transaction pooling mode (SPEC §6): `serve` and `worker` with
DATABASE_URL on PgBouncer, SKIPLOCK_DATABASE_POOLING=transaction and SKIPLOCK_LISTEN_URL
straight to Postgres run jobs to done, with outputs in the postgres backend; the company's
SSE stream gets every event in order; cancel stops a running job."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from cli_helpers import run_cli
from hosts import Host, new_dir, start_serve, start_worker
from pgbouncer import PgBouncer
from sse_client import open_stream, until

pytestmark = pytest.mark.skipif(
    shutil.which("pgbouncer") is None and not Path("/usr/sbin/pgbouncer").exists(),
    reason="PgBouncer is not installed (Debian package pgbouncer; .ci/run installs it)",
)


@pytest.fixture(scope="module")
def bouncer(server_url: str) -> Iterator[PgBouncer]:
    directory = Path(tempfile.mkdtemp(prefix="skiplock-pgbouncer-"))
    pgbouncer = PgBouncer(server_url, directory)
    pgbouncer.start()
    try:
        yield pgbouncer
    finally:
        pgbouncer.stop()
        shutil.rmtree(directory, ignore_errors=True)


async def test_serve_and_worker_through_pgbouncer_in_transaction_mode(
    bouncer: PgBouncer, database_url: str, tmp_path: Path
) -> None:
    pooled = bouncer.url(database_url)
    env = {
        "SKIPLOCK_DATABASE_POOLING": "transaction",
        "SKIPLOCK_LISTEN_URL": database_url,  # LISTEN and migrations: straight to Postgres
        "SKIPLOCK_STORAGE": "postgres",
    }
    made = run_cli("company", "create", "acme", env={"DATABASE_URL": pooled, **env})
    assert made.returncode == 0, made.stderr
    tenant = json.loads(made.stdout)
    headers = {"Authorization": f"Bearer {tenant['apiKey']}"}
    company = f"/companies/{tenant['companyId']}"
    before = bouncer.transactions(conninfo_to_dict(database_url)["dbname"])

    hosts: list[Host] = []
    try:
        hosts.append(start_serve(pooled, new_dir(tmp_path, "serve"), env))
        hosts.append(
            start_worker(pooled, new_dir(tmp_path, "worker"), "--concurrency", "4", env=env)
        )
        serve = hosts[0]
        async with (
            httpx.AsyncClient(base_url=serve.base_url, headers=headers) as client,
            open_stream(client, f"{company}/events") as stream,
        ):
            assert stream.status_code == 200
            jobs = []
            for n in range(30):
                body = {"jobType": "blob", "input": {"size": 1000 + n, "seconds": 0.05}}
                response = await client.post(f"{company}/content-jobs", json=body)
                assert response.status_code == 202, response.text
                jobs.append(response.json()["jobId"])
            long = (
                await client.post(
                    f"{company}/content-jobs", json={"jobType": "blob", "input": {"seconds": 60}}
                )
            ).json()["jobId"]

            async def status(job_id: str) -> str:
                found: dict[str, Any] = (
                    await client.get(f"{company}/content-jobs/{job_id}")
                ).json()
                return str(found["status"])

            await until_async(lambda: status(long), "running")
            canceled = await client.post(f"{company}/content-jobs/{long}/cancel")
            assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
            for job_id in jobs:
                await until_async(lambda job_id=job_id: status(job_id), "done", timeout=60)

            # Every event, in the order of the log (SPEC §2), none missing or doubled.
            expected = _event_ids(database_url, tenant["companyId"])
            await until(lambda: len(stream.ids()) >= len(expected), timeout=30)
            assert stream.ids() == expected
            types = [frame.event for frame in stream.events() if frame.data["jobId"] == long]
            assert types[-1] == "content_job.canceled"

            # Outputs stored in Postgres through the pooler download intact.
            for job_id in jobs[:5]:
                done = (await client.get(f"{company}/content-jobs/{job_id}")).json()
                asset = (await client.get(f"{company}/assets/{done['resultAssetId']}")).json()
                content = await client.get(f"{company}/assets/{done['resultAssetId']}/content")
                assert hashlib.sha256(content.content).hexdigest() == asset["sha256"]
        assert await status_after(serve, headers, company, long) == "canceled"
    finally:
        codes = [host.stop() for host in hosts]
    assert codes == [0, 0], [host.log()[-3000:] for host in hosts]
    # PgBouncer carried the traffic, and nobody failed on a prepared statement or a SET.
    assert bouncer.transactions(conninfo_to_dict(database_url)["dbname"]) > before + 60
    for host in hosts:
        assert "prepared statement" not in host.log(), host.log()[-3000:]


async def until_async(read: Any, want: str, timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (got := await read()) != want:
        assert loop.time() < deadline, f"still {got!r}, not {want!r}"
        await asyncio.sleep(0.05)


async def status_after(serve: Host, headers: dict[str, str], company: str, job_id: str) -> str:
    async with httpx.AsyncClient(base_url=serve.base_url, headers=headers) as client:
        return str((await client.get(f"{company}/content-jobs/{job_id}")).json()["status"])


def _event_ids(database_url: str, company_id: str) -> list[int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id FROM skiplock.content_job_events WHERE company_id = %s ORDER BY xid, id",
            (company_id,),
        ).fetchall()
    return [row[0] for row in rows]
