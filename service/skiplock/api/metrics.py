"""/metrics: Prometheus text, and the middleware that counts requests.

Each app keeps its own CollectorRegistry on `app.state.metrics` (made on first use), never
the process-global one: several apps live in one test process, and one app's counts must
not show up in another's scrape. Three sources:

- MetricsMiddleware counts every HTTP request by route *template*
  (`/companies/{companyId}/content-jobs`), never the concrete URL, so no tenant id reaches a
  label and the label set stays small whatever clients send.
- The notifier's in-process counters (SSE clients, delivery lag, events delivered), read at
  scrape time.
- Gauges read from Postgres with one query (sql/queries/metrics_snapshot.sql), summed over
  all companies: a snapshot taken at most every SNAPSHOT_SECONDS, on a connection of its own
  (application_name `skiplock metrics`), never the API's pool, and shared by every scrape
  meanwhile. The query counts content_jobs (0.2 s at 300,000 jobs): taken per scrape on the
  pool, 30 anonymous scrapers pushed an authenticated GET from 6 ms to 435 ms (p50). When the
  database does not answer within SCRAPE_TIMEOUT_SECONDS the gauges are left out (for that
  interval too) and the scrape still answers 200 with the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Iterable
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg.conninfo import make_conninfo
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skiplock import db, store
from skiplock.api.jobs import STATUSES

SCRAPE_TIMEOUT_SECONDS = 2.0
SNAPSHOT_SECONDS = 5.0  # the database gauges are at most this old
APPLICATION_NAME = "skiplock metrics"
# What generate_latest writes: the classic text format, which every Prometheus reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED = "<unmatched>"  # the route label of a request no route matched (a 404)
# Any other method a client sends is labelled OTHER: label values stay a fixed set.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

log = logging.getLogger(__name__)


class NotifierCollector(Collector):
    """The app's notifier (the one LISTEN connection behind every SSE stream), read at
    scrape time; zeros before the app has started one."""

    def __init__(self, app: Starlette) -> None:
        self._app = app

    def collect(self) -> Iterable[Metric]:
        notifier = getattr(self._app.state, "notifier", None)
        yield GaugeMetricFamily(
            "skiplock_sse_clients",
            "Open SSE streams (subscribers of this process's notifier).",
            value=notifier.subscriber_count if notifier else 0,
        )
        yield GaugeMetricFamily(
            "skiplock_event_delivery_lag_seconds",
            "Commit to fan-out of the last event this process delivered, in seconds.",
            value=notifier.last_lag_seconds if notifier else 0.0,
        )
        yield CounterMetricFamily(
            "skiplock_events_delivered",
            "Events this process's notifier has read and fanned out to its SSE streams.",
            value=notifier.delivered if notifier else 0,
        )


class SnapshotCollector(Collector):
    """The database gauges of one scrape (store.metrics_snapshot), all companies summed."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        snapshot = self._snapshot
        jobs = GaugeMetricFamily("skiplock_jobs", "Jobs per status.", labels=["status"])
        counts: dict[str, int] = snapshot["jobs_by_status"]
        for status in (*STATUSES, *sorted(set(counts) - set(STATUSES))):
            jobs.add_metric([status], counts.get(status, 0))
        yield jobs
        yield GaugeMetricFamily(
            "skiplock_queue_depth",
            "Jobs queued and due (run_at has passed): what workers could claim now.",
            value=snapshot["queue_depth"],
        )
        yield GaugeMetricFamily(
            "skiplock_event_horizon_age_seconds",
            "Age of the oldest running transaction that holds a transaction id, cluster-wide: "
            "how long event delivery may have been held back (0: nothing holds it).",
            value=snapshot["event_horizon_age_seconds"],
        )
        yield GaugeMetricFamily(
            "skiplock_notification_queue_usage",
            "pg_notification_queue_usage(): the fraction of Postgres's NOTIFY queue in use; "
            "at 1 every job change fails at commit.",
            value=snapshot["notification_queue_usage"],
        )


class AppMetrics:
    """One app's registry: request counts and durations, and the notifier's counters."""

    def __init__(self, app: Starlette) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "skiplock_http_requests",
            "HTTP requests by route template, method and status; counted when the response "
            "starts, so an SSE stream counts as it opens.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "skiplock_http_request_duration_seconds",
            "Seconds from the request to the response's headers (for a stream or a file: "
            "until it starts).",
            ["route", "method"],
            registry=self.registry,
        )
        self.registry.register(NotifierCollector(app))
        # The labelled children by (route, method, status): labels() takes a lock and
        # rebuilds the label tuple on every call. The set is small (see the module doc).
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        children = self._children.get((route, method, status))
        if children is None:
            children = (
                self.requests.labels(route, method, str(status)),
                self.duration.labels(route, method),
            )
            self._children[(route, method, status)] = children
        requests, duration = children
        requests.inc()
        duration.observe(seconds)


def app_metrics(app: Starlette) -> AppMetrics:
    metrics: AppMetrics | None = getattr(app.state, "metrics", None)
    if metrics is None:
        metrics = AppMetrics(app)
        app.state.metrics = metrics
    return metrics


def route_template(app: Starlette, scope: Scope) -> str:
    """The path template of the route that answered (or would have, for a 405)."""
    route = scope.get("route")  # set by Starlette's router on a match
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    for candidate in app.routes:
        path = getattr(candidate, "path", None)
        if isinstance(path, str) and candidate.matches(scope)[0] is not Match.NONE:
            return path
    return UNMATCHED


class MetricsMiddleware:
    """Counts each HTTP request when its response starts, by route template.

    Pure ASGI: it only watches `http.response.start` go by, so streamed responses (SSE,
    asset content) pass through unbuffered. An exception that escapes before a response
    started is counted as the 500 the server will answer.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        starlette_app = scope.get("app")
        if scope["type"] != "http" or not isinstance(starlette_app, Starlette):
            await self.app(scope, receive, send)
            return
        metrics = app_metrics(starlette_app)
        method = scope["method"] if scope["method"] in METHODS else "OTHER"
        started = time.perf_counter()
        answered = False

        def observe(status: int) -> None:
            nonlocal answered
            answered = True
            route = route_template(starlette_app, scope)
            metrics.observe(route, method, status, time.perf_counter() - started)

        async def watching_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not answered:
                observe(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        except Exception:
            if not answered:
                observe(500)
            raise


class SnapshotCache:
    """The database gauges, taken at most every SNAPSHOT_SECONDS on a connection of their own;
    concurrent scrapes share one reading."""

    def __init__(self, database_url: str, max_age: float = SNAPSHOT_SECONDS) -> None:
        self._url = make_conninfo(database_url, application_name=APPLICATION_NAME)
        self._max_age = max_age
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._value: dict[str, Any] | None = None
        self._taken = -math.inf  # monotonic time of the last reading (or failed attempt)
        self._reading: asyncio.Task[dict[str, Any] | None] | None = None
        self.readings = 0  # snapshots taken: exported, so a scrape shows the cache at work

    def age(self) -> float:
        return time.monotonic() - self._taken

    async def get(self) -> dict[str, Any] | None:
        if self.age() < self._max_age:
            return self._value
        if self._reading is None:
            self._reading = asyncio.create_task(self._read())
            self._reading.add_done_callback(self._store)
        return await asyncio.shield(self._reading)

    def _store(self, task: asyncio.Task[dict[str, Any] | None]) -> None:
        self._reading = None
        self._taken = time.monotonic()
        self._value = None if task.cancelled() else task.result()

    async def _read(self) -> dict[str, Any] | None:
        try:
            async with asyncio.timeout(SCRAPE_TIMEOUT_SECONDS):
                if self._conn is None or self._conn.closed:
                    self._conn = await db.connect_async(self._url)
                snapshot = await store.metrics_snapshot(self._conn)
        except Exception as exc:  # a down database, a timeout: never a failed scrape
            log.warning("metrics: database gauges left out for now (%s)", type(exc).__name__)
            await self.close()  # a connection cut mid-query is in an unknown state
            return None
        self.readings += 1
        return snapshot

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()


class CacheCollector(Collector):
    """How fresh the database gauges are, and how often they have been read."""

    def __init__(self, cache: SnapshotCache) -> None:
        self._cache = cache

    def collect(self) -> Iterable[Metric]:
        age = self._cache.age()
        yield GaugeMetricFamily(
            "skiplock_metrics_snapshot_age_seconds",
            "Seconds since the database gauges were last read (or tried): they are read at "
            f"most every {SNAPSHOT_SECONDS:g} s, whatever the number of scrapes.",
            value=age if math.isfinite(age) else 0.0,
        )
        yield CounterMetricFamily(
            "skiplock_metrics_snapshots",
            "Readings of the database gauges this process has taken.",
            value=self._cache.readings,
        )


async def metrics_endpoint(request: Request) -> Response:
    cache: SnapshotCache = request.app.state.snapshots  # made by the app's lifespan
    snapshot = await cache.get()
    body = generate_latest(app_metrics(request.app).registry)
    scrape = CollectorRegistry()  # this scrape's database gauges, never shared
    scrape.register(CacheCollector(cache))
    if snapshot is not None:
        scrape.register(SnapshotCollector(snapshot))
    body += generate_latest(scrape)
    return Response(body, media_type=CONTENT_TYPE)
