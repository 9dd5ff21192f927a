"""The Python client of the skiplock HTTP API: Client (sync) and AsyncClient, on httpx.

    from skiplock.client import Client

    with Client("http://127.0.0.1:8000", api_key) as client:
        job = client.submit("diagram", {"source": "digraph { a -> b }"})
        final = client.wait(job["jobId"], timeout=60)
        if final["status"] == "done":
            client.download(final["resultAssetId"], "diagram.svg")

The company: an API key (`sk_<key id>_<secret>`) does not spell its company, so a client
made without `company_id` asks `GET /whoami` once, before its first company route.

Events. `events()` follows the company's stream, `events(job_id)` one job's, as Event
objects (`id`, `type`, `data`). A dropped connection is reopened by itself with
`Last-Event-ID` and a growing backoff (0.1 s to 5 s), so no event is lost or repeated; the
iterator gives up with ConnectionFailed after `reconnect_for` seconds (default 300) without
a connection. A job stream begins with a `status` event whose data is the whole job as it
is now, and ends after the job's terminal event (`content_job.done`, `.failed`,
`.canceled`); after a reconnect its events simply go on. An Event of type `reset` says the
id the stream was resumed from is no longer kept (its events were pruned after
SKIPLOCK_EVENT_RETENTION_DAYS): events in between may be missing, so re-read what you
track (`get()` or `list()`); on a job stream a fresh `status` event follows it.

`wait(job_id)` follows the job's stream (not polling) and returns the final job.

Webhooks and schedules: `client.webhooks.create(url, events=None)`, `.list()`,
`.delete(id)`, `.deliveries(id, limit=None, status=None)`; `client.schedules.create(job_type,
input, cron=… or interval_seconds=…, timezone=…, source_task_id=…, priority=…)`, `.list()`,
`.delete(id)`. A receiver checks a delivery with `verify_webhook(secret, body, headers)`.
"""

from skiplock.client.async_client import AsyncClient
from skiplock.client.errors import (
    ApiError,
    ChecksumMismatch,
    Conflict,
    ConnectionFailed,
    Forbidden,
    InvalidRequest,
    NotFound,
    QuotaExceeded,
    SaveFailed,
    SkiplockError,
    Unauthorized,
    Unavailable,
    WaitTimeout,
)
from skiplock.client.sse import Event
from skiplock.client.sync_client import Client
from skiplock.client.webhooks import (
    AsyncSchedules,
    AsyncWebhooks,
    Schedules,
    Webhooks,
    WebhookVerificationFailed,
    verify_webhook,
)

__all__ = [
    "ApiError",
    "AsyncClient",
    "AsyncSchedules",
    "AsyncWebhooks",
    "ChecksumMismatch",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Event",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "QuotaExceeded",
    "SaveFailed",
    "Schedules",
    "SkiplockError",
    "Unauthorized",
    "Unavailable",
    "WaitTimeout",
    "WebhookVerificationFailed",
    "Webhooks",
    "verify_webhook",
]
