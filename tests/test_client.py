"""skiplock.client against the real API over real HTTP, a real worker and real Postgres."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from api_harness import SERVER_STOP_SECONDS, Api, Tenant, running_api
from skiplock.api.app import create_app
from skiplock.api.server import QuietServer
from skiplock.api.server import config as server_config
from skiplock.client import (
    AsyncClient,
    ChecksumMismatch,
    Client,
    Conflict,
    ConnectionFailed,
    Event,
    Forbidden,
    InvalidRequest,
    NotFound,
    SkiplockError,
    Unauthorized,
    WaitTimeout,
)
from skiplock.settings import Settings
from worker_harness import await_for, running_worker


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(database_url, tmp_path / "storage") as running:
        yield running


@pytest.fixture
async def client(api: Api) -> AsyncIterator[AsyncClient]:
    async with client_of(api) as made:
        yield made


def client_of(api: Api, tenant: Tenant | None = None, **options: Any) -> AsyncClient:
    tenant = tenant or api.acme
    return AsyncClient(api.base_url, tenant.api_key, tenant.company_id, **options)


async def test_a_client_without_company_id_asks_whoami(api: Api) -> None:
    async with AsyncClient(api.base_url, api.other.api_key) as client:
        job = await client.submit("noop")
        assert (await client.get(job["jobId"]))["companyId"] == str(api.other.company_id)
        assert [j["id"] async for j in client.list()] == [job["jobId"]]

    def read_back() -> str:  # a thread: the API answers from this test's event loop
        with Client(api.base_url, api.other.api_key) as sync:
            return str(sync.get(job["jobId"])["id"])

    assert await asyncio.to_thread(read_back) == job["jobId"]


def event_ids_in_order(api: Api) -> list[str]:
    """The company's events as the log orders them (SPEC §2: by xid, then id)."""
    rows = api.sql(
        "SELECT id FROM skiplock.content_job_events WHERE company_id = %s ORDER BY xid, id",
        (api.acme.company_id,),
    )
    return [str(row[0]) for row in rows]


@contextlib.asynccontextmanager
async def collecting(events: AsyncIterator[Event]) -> AsyncIterator[list[Event]]:
    """Collect a stream's events in a task while the block runs."""
    seen: list[Event] = []

    async def collect() -> None:
        async for event in events:
            seen.append(event)

    task = asyncio.create_task(collect())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def cancel_in_sql(api: Api, count: int) -> list[str]:
    """New jobs, canceled by hand: two events each."""
    job_ids = [await api.submit("noop") for _ in range(count)]
    for job_id in job_ids:
        api.sql(
            "UPDATE skiplock.content_jobs SET status = 'canceled' WHERE id = %s",
            (uuid.UUID(job_id),),
        )
    return job_ids


# -- jobs ----------------------------------------------------------------------------------


async def test_submit_get_cancel_and_retry(client: AsyncClient, api: Api) -> None:
    answer = await client.submit(
        "echo", {"text": "hi"}, source_task_id="t-1", priority=5, idempotency_key="k-1"
    )
    assert set(answer) == {"jobId", "status", "createdAt"} and answer["status"] == "queued"
    again = await client.submit(
        "echo", {"text": "hi"}, source_task_id="t-1", priority=5, idempotency_key="k-1"
    )
    assert again["jobId"] == answer["jobId"]
    job = await client.get(answer["jobId"])
    assert (job["jobType"], job["input"], job["sourceTaskId"], job["priority"]) == (
        "echo",
        {"text": "hi"},
        "t-1",
        5,
    )
    assert (await client.cancel(answer["jobId"]))["status"] == "canceled"
    retried = await client.retry(answer["jobId"])
    assert (retried["status"], retried["attempts"]) == ("queued", 0)


async def test_list_follows_the_cursor_across_pages(client: AsyncClient, api: Api) -> None:
    ids = [await api.submit("noop", sourceTaskId=f"s{i % 2}") for i in range(7)]
    await api.submit("noop", tenant=api.other)
    everything = [job["id"] async for job in client.list(page_size=3)]
    assert everything == list(reversed(ids))
    first_five = [job["id"] async for job in client.list(limit=5, page_size=2)]
    assert first_five == list(reversed(ids))[:5]
    odd = [job["id"] async for job in client.list(source_task_id="s1", page_size=1)]
    assert odd == [ids[5], ids[3], ids[1]]
    await client.cancel(ids[0])
    assert [job["id"] async for job in client.list(status="canceled")] == [ids[0]]
    assert [job async for job in client.list(job_type="echo")] == []


async def test_the_sync_client_does_the_same(api: Api) -> None:
    def use_it() -> tuple[str, list[str], str]:
        with Client(api.base_url, api.acme.api_key, api.acme.company_id) as client:
            job_id = client.submit("noop")["jobId"]
            second = client.submit("noop")["jobId"]
            listed = [job["id"] for job in client.list(page_size=1)]
            assert listed == [second, job_id]
            return job_id, listed, client.cancel(job_id)["status"]

    job_id, listed, status = await asyncio.to_thread(use_it)  # the server runs in this loop
    assert status == "canceled" and job_id in listed


async def test_errors_carry_status_code_and_message(client: AsyncClient, api: Api) -> None:
    async def error_of(call: Any) -> SkiplockError:
        with pytest.raises(SkiplockError) as raised:
            await call
        return raised.value

    bad_key = AsyncClient(api.base_url, "sk_nope", api.acme.company_id)
    async with bad_key:
        unauthorized = await error_of(bad_key.get(str(uuid.uuid4())))
    assert isinstance(unauthorized, Unauthorized)
    assert (unauthorized.status, unauthorized.code) == (401, "unauthorized")
    other_key = AsyncClient(api.base_url, api.other.api_key, api.acme.company_id)
    async with other_key:
        forbidden = await error_of(other_key.submit("noop"))
    assert isinstance(forbidden, Forbidden) and forbidden.code == "forbidden"
    missing = await error_of(client.get(str(uuid.uuid4())))
    assert isinstance(missing, NotFound) and (missing.status, missing.code) == (404, "not_found")
    assert missing.message == "no such job"
    job_id = await api.submit("noop")
    conflict = await error_of(client.retry(job_id))
    assert isinstance(conflict, Conflict) and (conflict.status, conflict.code) == (409, "conflict")
    assert "only failed or canceled jobs can be retried" in conflict.message
    invalid = await error_of(client.submit("no-such-type"))
    assert isinstance(invalid, InvalidRequest) and (invalid.status, invalid.code) == (
        422,
        "invalid",
    )
    assert "unknown jobType 'no-such-type'" in invalid.message


async def test_an_unreachable_api_raises_connection_failed() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: refused
        async with AsyncClient(f"http://127.0.0.1:{port}", "sk_x", uuid.uuid4()) as client:
            with pytest.raises(
                ConnectionFailed, match=f"cannot reach the skiplock API at .*{port}"
            ):
                await client.get(str(uuid.uuid4()))
            with pytest.raises(ConnectionFailed):
                await anext(aiter(client.events()))


# -- wait and events -----------------------------------------------------------------------


async def test_wait_follows_the_job_stream_until_a_real_worker_finishes(
    client: AsyncClient, api: Api
) -> None:
    job_id = (await client.submit("sleep", {"seconds": 0.6, "tick": 0.1}))["jobId"]
    seen: list[Event] = []
    waiting = asyncio.create_task(client.wait(job_id, timeout=20, on_event=seen.append))
    await await_for(lambda: seen)  # the stream is open: the worker starts after it
    async with running_worker(api.database_url, api.storage_dir):
        job = await waiting
    assert job["status"] == "done" and job["resultAssetId"]
    assert seen[0].type == "status" and seen[0].status == "queued"
    assert seen[-1].type == "content_job.done" and seen[-1].is_terminal
    assert any(e.type == "content_job.progress" for e in seen)
    assert all(e.job_id == job_id for e in seen)
    # A finished job: the stream's first status says so, and wait returns at once.
    assert (await client.wait(job_id, timeout=5))["status"] == "done"


async def test_wait_gives_up_at_its_timeout_and_ends_on_cancel(
    client: AsyncClient, api: Api
) -> None:
    job_id = await api.submit("noop")  # no worker: it stays queued
    with pytest.raises(WaitTimeout, match=f"job {job_id} did not finish within 0.5 s"):
        await client.wait(job_id, timeout=0.5)
    waiting = asyncio.create_task(client.wait(job_id, timeout=10))
    await await_for(lambda: api.app_state().notifier.subscriber_count == 1)
    await client.cancel(job_id)
    assert (await waiting)["status"] == "canceled"
    with pytest.raises(NotFound):
        await client.wait(str(uuid.uuid4()))


async def test_events_reconnect_after_the_server_closes_them_with_no_gap_or_duplicate(
    client: AsyncClient, api: Api
) -> None:
    notifier = api.app_state().notifier
    async with collecting(client.events()) as seen:
        await await_for(lambda: notifier.subscriber_count == 1)
        await cancel_in_sql(api, 3)
        await await_for(lambda: len(seen) >= 6)
        for subscription in [s for group in notifier._by_company.values() for s in group]:
            subscription.overflowed.set()  # as for a client too slow: the server ends it
        await cancel_in_sql(api, 3)  # while it reconnects
        await await_for(lambda: len(seen) >= 12)
        await cancel_in_sql(api, 2)  # live again
        await await_for(lambda: len(seen) >= 16)
        await asyncio.sleep(0.2)  # nothing more (no duplicate) arrives
    ids = [e.id for e in seen]
    logged = event_ids_in_order(api)
    assert ids == logged[logged.index(str(ids[0])) :]
    assert len(ids) == len(set(ids)) == 16


@contextlib.asynccontextmanager
async def serving(api: Api, port: int) -> AsyncIterator[None]:
    """A second API process's worth of server (its own app, pool, notifier) on `port`."""
    closing = asyncio.Event()
    settings = Settings(database_url=api.database_url, storage_dir=api.storage_dir)
    server = QuietServer(server_config(create_app(settings, closing=closing), "127.0.0.1", port))
    task = asyncio.create_task(server.serve())
    await await_for(lambda: server.started or task.done())
    try:
        yield
    finally:
        closing.set()
        server.should_exit = True
        await asyncio.wait_for(task, SERVER_STOP_SECONDS)


def refused(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


async def test_events_resume_across_an_api_restart_with_no_gap_or_duplicate(
    client: AsyncClient, api: Api
) -> None:
    port = int(api.base_url.rsplit(":", 1)[1])
    async with collecting(client.events()) as seen:
        await await_for(lambda: api.app_state().notifier.subscriber_count == 1)
        await cancel_in_sql(api, 2)
        await await_for(lambda: len(seen) >= 4)
        api.closing.set()  # stop the API: streams end, then connections are refused
        api.server.should_exit = True
        await await_for(lambda: refused(port), timeout=10)
        job_ids = [str(uuid.uuid4()) for _ in range(3)]
        for job_id in job_ids:  # while no API runs at all
            api.sql(
                "INSERT INTO skiplock.content_jobs (id, company_id, job_type) VALUES (%s, %s, 'x')",
                (job_id, api.acme.company_id),
            )
        await asyncio.sleep(0.5)  # the client retries meanwhile, with backoff
        async with serving(api, port):
            await await_for(lambda: len(seen) >= 7)
            api.sql("UPDATE skiplock.content_jobs SET status = 'canceled' WHERE job_type = 'x'")
            await await_for(lambda: len(seen) >= 10)
            await asyncio.sleep(0.2)
    ids = [e.id for e in seen]
    logged = event_ids_in_order(api)
    assert ids == logged[logged.index(str(ids[0])) :]
    assert len(ids) == len(set(ids)) == 10
    assert [e.job_id for e in seen[4:7]] == job_ids


async def test_an_unknown_last_event_id_is_surfaced_as_reset(client: AsyncClient, api: Api) -> None:
    async with collecting(client.events(last_event_id="999999")) as seen:
        await await_for(lambda: seen)
        job_id = await api.submit("noop")
        await await_for(lambda: len(seen) == 2)
    assert (seen[0].type, seen[0].id, seen[0].data) == ("reset", None, {"lastEventId": "999999"})
    assert seen[1].type == "content_job.queued" and seen[1].job_id == job_id


async def test_sync_events_of_a_job_end_after_its_terminal_event(api: Api) -> None:
    job_id = await api.submit("noop")
    api.sql("UPDATE skiplock.content_jobs SET status = 'canceled' WHERE id = %s", (job_id,))

    def read_all() -> list[str]:
        with Client(api.base_url, api.acme.api_key, api.acme.company_id) as client:
            return [e.type for e in client.events(job_id, last_event_id=None)]

    assert await asyncio.to_thread(read_all) == ["status"]  # finished: status, then the end
    first = api.sql("SELECT min(id) FROM skiplock.content_job_events WHERE job_id = %s", (job_id,))

    def replay() -> list[str]:
        with Client(api.base_url, api.acme.api_key, api.acme.company_id) as client:
            return [e.type for e in client.events(job_id, last_event_id=str(first[0][0]))]

    assert await asyncio.to_thread(replay) == ["status", "content_job.canceled"]


# -- assets --------------------------------------------------------------------------------


@pytest.fixture
async def finished_echo(client: AsyncClient, api: Api) -> dict[str, Any]:
    job_id = (await client.submit("echo", {"text": "hello"}))["jobId"]
    async with running_worker(api.database_url, api.storage_dir):
        return await client.wait(job_id, timeout=20)


def leftovers(folder: Path) -> Iterator[Path]:
    return (p for p in folder.iterdir() if p.name.endswith(".part"))


async def test_download_streams_to_disk_and_checks_the_sha256(
    client: AsyncClient, api: Api, finished_echo: dict[str, Any], tmp_path: Path
) -> None:
    asset_id = finished_echo["resultAssetId"]
    saved = await client.download(asset_id, tmp_path / "out.txt")
    assert saved == tmp_path / "out.txt" and saved.read_bytes() == b"hello"

    def into(folder: Path) -> Path:
        with Client(api.base_url, api.acme.api_key, api.acme.company_id) as sync_client:
            return sync_client.download(asset_id, folder)

    into_folder = await asyncio.to_thread(into, tmp_path)  # a folder: the asset's own name
    assert into_folder == tmp_path / "echo.txt" and into_folder.read_bytes() == b"hello"
    assert (await client.asset(asset_id))["sha256"] == hashlib.sha256(b"hello").hexdigest()


async def test_a_sha256_mismatch_raises_and_leaves_no_file(
    client: AsyncClient, api: Api, finished_echo: dict[str, Any], tmp_path: Path
) -> None:
    asset_id = finished_echo["resultAssetId"]
    api.sql("UPDATE skiplock.assets SET sha256 = %s WHERE id = %s", ("0" * 64, asset_id))
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(ChecksumMismatch, match="nothing was written"):
        await client.download(asset_id, target / "out.txt")
    with pytest.raises(NotFound):
        await client.download(str(uuid.uuid4()), target / "other.txt")
    assert list(target.iterdir()) == []
    assert list(leftovers(target)) == []


async def test_the_readme_example_runs_as_written(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli_helpers import REPO

    readme = (REPO / "README.md").read_text()
    match = re.search(r"<!-- client-example -->\s*```python\n(.*?)```", readme, re.S)
    assert match, "README lost its client example"
    monkeypatch.setenv("SKIPLOCK_URL", api.base_url)
    monkeypatch.setenv("SKIPLOCK_API_KEY", api.acme.api_key)
    monkeypatch.chdir(tmp_path)
    async with running_worker(api.database_url, api.storage_dir):
        await asyncio.to_thread(exec, compile(match.group(1), "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "done None"
    assert printed[-1].startswith("409 conflict the job is already done")
    assert (tmp_path / "diagram.svg").read_text().lstrip().startswith("<?xml")
