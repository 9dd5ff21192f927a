"""The Starlette application: routes, shared state, error handling, health.

State on `app.state`: `pool` (the API's connection pool), `auth` (key and token
resolution), `notifier` (the one LISTEN connection fanning events out to SSE streams),
`registry` (job types, to validate submissions), `storages` (every storage backend this
process reaches, by provider: storage/registry.py), `closing` (set on
shutdown so open streams end at once instead of holding the server up).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from skiplock import db, store
from skiplock.api import assets, bulk, jobs, metrics, openapi, schedules, streams, ui, webhooks
from skiplock.api.auth import Authenticator, whoami
from skiplock.api.errors import ContainErrors, exception_handlers
from skiplock.api.notifier import Notifier
from skiplock.api.submits import SubmitWriter
from skiplock.handlers import Registry, registry
from skiplock.limits import ServeLimits, open_file_limit, serve_limits
from skiplock.settings import Settings
from skiplock.storage import Storage
from skiplock.storage.registry import open_registry

COMPANY = "/companies/{companyId}"
POOL_WAIT_SECONDS = 3.0


def routes() -> list[Route]:
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics.metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", openapi.openapi_json, methods=["GET"]),
        Route("/whoami", whoami, methods=["GET"]),
        Route(f"{COMPANY}/content-jobs", jobs.submit_job, methods=["POST"]),
        Route(f"{COMPANY}/content-jobs", jobs.list_jobs, methods=["GET"]),
        # Before the {jobId} routes, so `cancel` and `retry` are never read as a job id.
        Route(f"{COMPANY}/content-jobs/cancel", bulk.cancel_jobs, methods=["POST"]),
        Route(f"{COMPANY}/content-jobs/retry", bulk.retry_jobs, methods=["POST"]),
        Route(f"{COMPANY}/content-jobs/{{jobId}}", jobs.get_job, methods=["GET"]),
        Route(f"{COMPANY}/content-jobs/{{jobId}}/cancel", jobs.cancel_job, methods=["POST"]),
        Route(f"{COMPANY}/content-jobs/{{jobId}}/retry", jobs.retry_job, methods=["POST"]),
        Route(f"{COMPANY}/content-jobs/{{jobId}}/events", streams.job_events, methods=["GET"]),
        Route(f"{COMPANY}/events", streams.company_events, methods=["GET"]),
        Route(f"{COMPANY}/stats", jobs.company_stats, methods=["GET"]),
        Route(f"{COMPANY}/stream-tokens", jobs.create_stream_token, methods=["POST"]),
        Route(f"{COMPANY}/assets/{{assetId}}", assets.get_asset, methods=["GET"]),
        Route(
            f"{COMPANY}/assets/{{assetId}}/content",
            assets.get_asset_content,
            methods=["GET", "HEAD"],
        ),
        *webhook_routes(),
        *ui.routes(),
    ]


def webhook_routes() -> list[Route]:
    """Completion webhooks and schedules (SPEC §7)."""
    return [
        Route(f"{COMPANY}/webhooks", webhooks.create_webhook, methods=["POST"]),
        Route(f"{COMPANY}/webhooks", webhooks.list_webhooks, methods=["GET"]),
        Route(
            f"{COMPANY}/webhooks/{{webhookId}}/deliveries",
            webhooks.list_deliveries,
            methods=["GET"],
        ),
        Route(f"{COMPANY}/webhooks/{{webhookId}}", webhooks.delete_webhook, methods=["DELETE"]),
        Route(f"{COMPANY}/schedules", schedules.create_schedule, methods=["POST"]),
        Route(f"{COMPANY}/schedules", schedules.list_schedules, methods=["GET"]),
        Route(f"{COMPANY}/schedules/{{scheduleId}}", schedules.delete_schedule, methods=["DELETE"]),
    ]


def create_app(
    settings: Settings,
    *,
    handlers: Registry = registry,
    storage: Storage | None = None,
    closing: asyncio.Event | None = None,
) -> Starlette:
    database_url = settings.require_database_url()
    listen_url = settings.require_listen_url()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # A request waits at most POOL_WAIT_SECONDS for a connection: with the database
        # down it gets its 503 quickly instead of hanging.
        pool = await db.open_pool(
            database_url,
            min_size=2,
            max_size=10,
            name="api",
            timeout=POOL_WAIT_SECONDS,
            prepare=settings.prepared_statements,
        )
        app.state.pool = pool
        app.state.auth = Authenticator(pool)
        app.state.submits = SubmitWriter(pool)
        app.state.notifier = Notifier(listen_url, pool)
        # /metrics' database gauges, on a connection of their own, opened at the first scrape.
        app.state.snapshots = metrics.SnapshotCache(database_url)
        notifying = asyncio.create_task(app.state.notifier.run())
        try:
            yield
        finally:
            app.state.closing.set()
            notifying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await notifying
            await app.state.snapshots.close()
            await pool.close()
            await app.state.storages.aclose()

    middleware = []
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "HEAD", "DELETE"],
                allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
                expose_headers=["Location", "ETag", "Content-Disposition"],
            )
        )
    middleware.append(Middleware(metrics.MetricsMiddleware))
    middleware.append(Middleware(ContainErrors))  # innermost: metrics count its 500s
    app = Starlette(
        routes=routes(),
        middleware=middleware,
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    app.state.registry = handlers
    app.state.storages = open_registry(settings, default=storage)
    app.state.settings = settings
    app.state.limits = app_limits(settings)
    app.state.closing = closing or asyncio.Event()
    return app


def app_limits(settings: Settings) -> ServeLimits:
    """How many connections and streams this process takes, given its open-file limit."""
    return serve_limits(
        open_file_limit(),
        settings.http_max_connections,
        settings.sse_max_streams,
        settings.sse_max_streams_per_company,
    )


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
