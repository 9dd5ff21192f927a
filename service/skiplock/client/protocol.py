"""The requests the client makes and how their answers are read, with no I/O.

Client and AsyncClient differ only in how they send a Call; what to send (Routes), how to
read an answer (decode) and how to walk the list's pages (Pager) live here, once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from skiplock.client.errors import ApiError, ConnectionFailed, api_error

JobDict = dict[str, Any]
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200  # the API's own cap on `limit`
# A bulk change goes 1,000 jobs per transaction at about 30-40 ms each (bench/soak/batches.py):
# a million jobs take well under this, however long the client's usual timeout.
BULK_TIMEOUT = 600.0


@dataclass(frozen=True)
class Call:
    """One HTTP request, relative to the client's base URL."""

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None  # seconds; None: the client's own timeout

    def send_options(self) -> dict[str, Any]:
        """httpx's request() keywords besides method and path."""
        options: dict[str, Any] = {
            "params": self.params,
            "json": self.body,
            "headers": self.headers,
        }
        if self.timeout is not None:
            options["timeout"] = self.timeout
        return options


# Whose key this is: {"companyId", "keyId"}. A key does not spell its company, so a client
# made without company_id asks once, before its first company route.
WHOAMI = Call("GET", "/whoami")


class Routes:
    """The API's routes for one company (SPEC §4)."""

    def __init__(self, company_id: uuid.UUID | str) -> None:
        self.company_id = company_id_of(company_id)
        self.prefix = f"/companies/{self.company_id}"

    def submit(
        self,
        job_type: str,
        input: Mapping[str, Any] | None = None,  # the API's field name
        *,
        source_task_id: str | None = None,
        priority: int | None = None,
        run_at: datetime | str | None = None,
        max_attempts: int | None = None,
        timeout_seconds: int | None = None,
        idempotency_key: str | None = None,
    ) -> Call:
        optional = {
            "sourceTaskId": source_task_id,
            "priority": priority,
            "runAt": run_at.isoformat() if isinstance(run_at, datetime) else run_at,
            "maxAttempts": max_attempts,
            "timeoutSeconds": timeout_seconds,
        }
        body: dict[str, Any] = {"jobType": job_type, "input": dict(input or {})}
        body.update({name: value for name, value in optional.items() if value is not None})
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
        return Call("POST", f"{self.prefix}/content-jobs", body=body, headers=headers)

    def job(self, job_id: str) -> Call:
        return Call("GET", self._job_path(job_id))

    def cancel(self, job_id: str) -> Call:
        return Call("POST", f"{self._job_path(job_id)}/cancel")

    def retry(self, job_id: str) -> Call:
        return Call("POST", f"{self._job_path(job_id)}/retry")

    def bulk(
        self,
        action: str,
        *,
        status: str | Sequence[str] | None,
        job_type: str | None,
        source_task_id: str | None,
    ) -> Call:
        """`cancel` or `retry` every job of the company that matches (None: any)."""
        statuses = [status] if isinstance(status, str) else status
        fields = {"status": statuses, "jobType": job_type, "sourceTaskId": source_task_id}
        body = {name: value for name, value in fields.items() if value is not None}
        path = f"{self.prefix}/content-jobs/{action}"
        return Call("POST", path, body=body, timeout=BULK_TIMEOUT)

    def asset(self, asset_id: str) -> Call:
        return Call("GET", f"{self.prefix}/assets/{asset_id}")

    def asset_content(self, asset_id: str) -> Call:
        return Call("GET", f"{self.prefix}/assets/{asset_id}/content")

    def events_path(self, job_id: str | None) -> str:
        """The job's stream, or the company's when job_id is None."""
        return f"{self.prefix}/events" if job_id is None else f"{self._job_path(job_id)}/events"

    def _job_path(self, job_id: str) -> str:
        return f"{self.prefix}/content-jobs/{job_id}"


def company_id_of(value: uuid.UUID | str) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise ValueError(f"company_id {value!r} is not a UUID") from None


def decode(status: int, content: bytes) -> Any:
    """The JSON of a successful answer (None for 204 No Content); the matching ApiError
    for an error answer."""
    if status == 204:
        return None
    try:
        body = json.loads(content) if content else None
    except ValueError:
        body = None
    if status >= 400:
        raise api_error(status, body)
    if body is None:
        raise ApiError(status, "not_json", "the answer is not JSON; is this a skiplock API?")
    return body


def connection_failed(base_url: str, exc: Exception) -> ConnectionFailed:
    reason = str(exc) or type(exc).__name__
    return ConnectionFailed(f"cannot reach the skiplock API at {base_url} ({reason})")


class Pager:
    """Walks `GET …/content-jobs` page by page through `nextCursor`, up to `limit` jobs."""

    def __init__(
        self,
        routes: Routes,
        *,
        status: str | None = None,
        job_type: str | None = None,
        source_task_id: str | None = None,
        limit: int | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        filters = {"status": status, "jobType": job_type, "sourceTaskId": source_task_id}
        self._path = f"{routes.prefix}/content-jobs"
        self._filters = {name: value for name, value in filters.items() if value is not None}
        self._left = limit
        self._page_size = max(1, min(page_size, MAX_PAGE_SIZE))
        self._cursor: str | None = None
        self._done = limit is not None and limit <= 0

    def next_call(self) -> Call | None:
        """The request for the next page, or None when every page has been read."""
        if self._done:
            return None
        size = self._page_size if self._left is None else min(self._page_size, self._left)
        params = {**self._filters, "limit": str(size)}
        if self._cursor is not None:
            params["cursor"] = self._cursor
        return Call("GET", self._path, params=params)

    def take(self, page: Any) -> list[JobDict]:
        """The jobs of an answered page, remembering where the next one starts."""
        items: list[JobDict] = list(page["items"])
        if self._left is not None:
            items = items[: self._left]
            self._left -= len(items)
        self._cursor = page.get("nextCursor")
        self._done = self._cursor is None or self._left == 0
        return items
