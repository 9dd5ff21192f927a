"""The Starlette application: routes, the pool's lifetime, and health.

For now it serves /healthz; the job, event and asset routes come with the API issue.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from skiplock import db, store
from skiplock.settings import Settings


def create_app(settings: Settings) -> Starlette:
    database_url = settings.require_database_url()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.pool = await db.open_pool(database_url, min_size=1, max_size=10, name="api")
        try:
            yield
        finally:
            await app.state.pool.close()

    async def healthz(request: Request) -> JSONResponse:
        try:
            async with request.app.state.pool.connection(timeout=2) as conn:
                await conn.execute(store.query("ping"))
        except (psycopg.Error, OSError, TimeoutError) as exc:
            return JSONResponse(
                {
                    "status": "unavailable",
                    "error": {"code": "database_unavailable", "message": type(exc).__name__},
                },
                status_code=503,
            )
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/healthz", healthz)], lifespan=lifespan)
