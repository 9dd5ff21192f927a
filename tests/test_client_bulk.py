"""skiplock.client's bulk methods (cancel_all, retry_all) against the real API and Postgres."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from api_harness import Api, running_api
from skiplock.client import AsyncClient, Client, Forbidden, InvalidRequest


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(database_url, tmp_path / "storage") as running:
        yield running


async def test_cancel_all_and_retry_all_take_the_filters(api: Api) -> None:
    noop = [await api.submit("noop", sourceTaskId="t-1") for _ in range(3)]
    echo = await api.submit("echo")
    theirs = await api.submit("noop", tenant=api.other)
    async with AsyncClient(api.base_url, api.acme.api_key) as client:
        assert await client.cancel_all(job_type="noop", source_task_id="t-2") == 0
        assert await client.cancel_all("queued", job_type="noop", source_task_id="t-1") == 3
        assert await client.retry_all(["canceled"], job_type="noop") == 3
        assert await client.cancel_all() == 4
        assert await client.retry_all(source_task_id="t-1") == 3
        with pytest.raises(InvalidRequest, match="status must be a list of"):
            await client.cancel_all("done")
    assert (
        await api.client.get(f"{api.acme.prefix}/content-jobs/{echo}", headers=api.acme.headers)
    ).json()["status"] == "canceled"
    statuses = api.sql(
        "SELECT status, count(*) FROM skiplock.content_jobs WHERE id = ANY(%s) GROUP BY status",
        ([*noop, theirs],),
    )
    assert sorted(statuses) == [("queued", 4)]


async def test_the_sync_client_has_them_too(api: Api) -> None:
    await api.submit("noop")

    def use_it() -> tuple[int, int]:
        with Client(api.base_url, api.acme.api_key, api.acme.company_id) as client:
            return client.cancel_all(), client.retry_all("canceled")

    assert await asyncio.to_thread(use_it) == (1, 1)  # the server runs in this loop

    def theirs() -> None:
        with Client(api.base_url, api.other.api_key, api.acme.company_id) as client:
            client.cancel_all()

    with pytest.raises(Forbidden):
        await asyncio.to_thread(theirs)
