"""Client: the skiplock API from synchronous code, on httpx.Client.

Only the I/O is here; what to send and how to read the answers is in protocol.py and
sse.py, shared with AsyncClient.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from skiplock.client import protocol
from skiplock.client.config import ClientConfig
from skiplock.client.download import PartialDownload
from skiplock.client.errors import Unavailable
from skiplock.client.protocol import Call, JobDict, Routes
from skiplock.client.sse import Event
from skiplock.client.webhooks import Schedules, Webhooks


class Client:
    """`Client(base_url, api_key, company_id=None)`: one company's jobs, events and assets.

    Use it as a context manager, or call close(). Errors: skiplock.client.ApiError (and its
    subclasses per status) for the API's error answers, ConnectionFailed when the API
    cannot be reached.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        company_id: uuid.UUID | str | None = None,
        *,
        timeout: float = 30.0,
        reconnect_for: float | None = 300.0,
    ) -> None:
        self._config = ClientConfig(base_url, api_key, company_id, timeout, reconnect_for)
        self._http = httpx.Client(**self._config.httpx_options())
        self.webhooks = Webhooks(self._call, self._routes)  # completion webhooks
        self.schedules = Schedules(self._call, self._routes)  # periodic jobs

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- jobs ------------------------------------------------------------------------------

    def submit(
        self,
        job_type: str,
        input: Mapping[str, Any] | None = None,  # the API's field name
        *,
        source_task_id: str | None = None,
        priority: int | None = None,
        run_at: datetime | str | None = None,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
        timeout_seconds: int | None = None,
    ) -> JobDict:
        """Submit a job: the 202 answer, `{"jobId", "status", "createdAt"}`."""
        call = self._routes().submit(
            job_type,
            input,
            source_task_id=source_task_id,
            priority=priority,
            run_at=run_at,
            max_attempts=max_attempts,
            timeout_seconds=timeout_seconds,
            idempotency_key=idempotency_key,
        )
        result: JobDict = self._call(call)
        return result

    def get(self, job_id: str) -> JobDict:
        result: JobDict = self._call(self._routes().job(job_id))
        return result

    def list(
        self,
        status: str | None = None,
        job_type: str | None = None,
        source_task_id: str | None = None,
        limit: int | None = None,
        *,
        page_size: int = protocol.DEFAULT_PAGE_SIZE,
    ) -> Iterator[JobDict]:
        """The company's jobs, newest first, at most `limit` (None: all), fetched
        `page_size` at a time as the iteration goes."""
        pager = protocol.Pager(
            self._routes(),
            status=status,
            job_type=job_type,
            source_task_id=source_task_id,
            limit=limit,
            page_size=page_size,
        )
        while (call := pager.next_call()) is not None:
            yield from pager.take(self._call(call))

    def cancel(self, job_id: str) -> JobDict:
        result: JobDict = self._call(self._routes().cancel(job_id))
        return result

    def retry(self, job_id: str) -> JobDict:
        result: JobDict = self._call(self._routes().retry(job_id))
        return result

    def cancel_all(
        self,
        status: str | Sequence[str] | None = None,
        *,
        job_type: str | None = None,
        source_task_id: str | None = None,
    ) -> int:
        """Cancel every queued or running job that matches (status: "queued", "running" or
        both; None: both); how many were canceled. Running handlers stop within a second."""
        call = self._routes().bulk(
            "cancel", status=status, job_type=job_type, source_task_id=source_task_id
        )
        count: int = (self._call(call))["count"]
        return count

    def retry_all(
        self,
        status: str | Sequence[str] | None = None,
        *,
        job_type: str | None = None,
        source_task_id: str | None = None,
    ) -> int:
        """Queue every failed or canceled job that matches again, attempts reset (status:
        "failed", "canceled" or both; None: both); how many were."""
        call = self._routes().bulk(
            "retry", status=status, job_type=job_type, source_task_id=source_task_id
        )
        count: int = (self._call(call))["count"]
        return count

    # -- events ----------------------------------------------------------------------------

    def events(
        self, job_id: str | None = None, last_event_id: str | None = None
    ) -> Iterator[Event]:
        """The company's events (job_id None) or one job's, reconnecting by itself; see
        the package docstring for `status` and `reset`."""
        return self._follow(job_id, last_event_id)

    def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        *,
        on_event: Callable[[Event], None] | None = None,
    ) -> JobDict:
        """Follow the job's stream until it is done, failed or canceled; the final job.
        WaitTimeout after `timeout` seconds. on_event sees each event (progress, say)."""
        for event in self._follow(job_id, None, timeout=timeout):
            if on_event is not None:
                on_event(event)
        return self.get(job_id)

    def _follow(
        self, job_id: str | None, last_event_id: str | None, *, timeout: float | None = None
    ) -> Iterator[Event]:
        follower = self._config.follower(self._routes(), job_id, last_event_id, timeout=timeout)
        while not follower.finished:
            try:
                with self._http.stream(
                    "GET",
                    follower.path,
                    headers=follower.headers(),
                    timeout=self._config.stream_timeout(follower),
                ) as response:
                    if response.status_code != 200:
                        protocol.decode(response.status_code, response.read())
                    follower.opened()
                    for line in response.iter_lines():
                        yield from follower.feed(line)
                        if follower.finished:
                            return
                follower.ended()
            except httpx.TransportError as exc:
                follower.dropped(protocol.connection_failed(self._config.base_url, exc))
            except Unavailable as exc:
                follower.dropped(exc)
            if not follower.finished:
                time.sleep(follower.delay())

    # -- assets ----------------------------------------------------------------------------

    def asset(self, asset_id: str) -> JobDict:
        """An asset's metadata: id, contentType, byteSize, sha256, originalFilename, …"""
        result: JobDict = self._call(self._routes().asset(asset_id))
        return result

    def download(self, asset_id: str, path: str | os.PathLike[str]) -> Path:
        """Stream the asset to `path` (or into it, when it is a directory), check its
        sha256; ChecksumMismatch, with nothing left on disk, when it differs."""
        content = self._routes().asset_content(asset_id)
        with PartialDownload(path, self.asset(asset_id)) as part:
            try:
                with self._http.stream(content.method, content.path) as response:
                    if response.status_code != 200:
                        protocol.decode(response.status_code, response.read())
                    for chunk in response.iter_bytes():
                        part.write(chunk)
            except httpx.TransportError as exc:
                raise protocol.connection_failed(self._config.base_url, exc) from exc
            return part.finish()

    # -- plumbing --------------------------------------------------------------------------

    def _routes(self) -> Routes:
        if self._config.routes is not None:
            return self._config.routes
        return self._config.learn_company(self._call(protocol.WHOAMI))

    def _call(self, call: Call) -> Any:
        try:
            response = self._http.request(call.method, call.path, **call.send_options())
        except httpx.TransportError as exc:
            raise protocol.connection_failed(self._config.base_url, exc) from exc
        return protocol.decode(response.status_code, response.content)
