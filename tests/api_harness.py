"""The real API for tests: uvicorn serving create_app on a free port, in the test's loop,
with two companies (for cross-tenant checks) and an httpx client."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

import job_handlers  # noqa: F401  (registers the test job types)
from processes import free_port
from skiplock import db, handlers, keys
from skiplock.api.app import create_app
from skiplock.api.server import QuietServer
from skiplock.api.server import config as server_config
from skiplock.settings import Settings

handlers.load_handler_modules([], include_entry_points=False)

# uvicorn waits up to 5 s for open connections, then the pool up to 5 s for its workers:
# on a loaded machine the two together passed a 10 s bound.
SERVER_STOP_SECONDS = 30


@dataclass
class Tenant:
    company_id: uuid.UUID
    key_id: uuid.UUID
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def prefix(self) -> str:
        return f"/companies/{self.company_id}"


@dataclass
class Api:
    base_url: str
    database_url: str
    storage_dir: Path
    client: httpx.AsyncClient
    acme: Tenant
    other: Tenant
    server: QuietServer
    closing: asyncio.Event

    async def submit(
        self, job_type: str = "noop", tenant: Tenant | None = None, **body: Any
    ) -> str:
        tenant = tenant or self.acme
        response = await self.client.post(
            f"{tenant.prefix}/content-jobs",
            json={"jobType": job_type, **body},
            headers=tenant.headers,
        )
        assert response.status_code == 202, response.text
        job_id: str = response.json()["jobId"]
        return job_id

    def app_state(self) -> Any:
        return self.server.config.app.state  # type: ignore[attr-defined]

    def sql(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []


async def _tenant(database_url: str, name: str) -> Tenant:
    conn = await db.connect_async(database_url)
    async with conn:
        new = await keys.create_company(conn, name)
    return Tenant(new.company_id, new.key_id, new.api_key)


@contextlib.asynccontextmanager
async def running_api(database_url: str, storage_dir: Path, **settings: Any) -> AsyncIterator[Api]:
    port = free_port()
    closing = asyncio.Event()
    app = create_app(
        Settings(database_url=database_url, storage_dir=storage_dir, **settings), closing=closing
    )
    server = QuietServer(server_config(app, "127.0.0.1", port))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    acme = await _tenant(database_url, "acme")
    other = await _tenant(database_url, "other")
    base_url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        try:
            yield Api(base_url, database_url, storage_dir, client, acme, other, server, closing)
        finally:
            closing.set()
            server.should_exit = True
            await asyncio.wait_for(serving, SERVER_STOP_SECONDS)
