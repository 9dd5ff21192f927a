"""AsyncClient: the skiplock API from asyncio code, on httpx.AsyncClient.

The same calls as Client, awaited; what to send and how to read the answers is shared with
it (protocol.py, sse.py).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
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
from skiplock.client.webhooks import AsyncSchedules, AsyncWebhooks


class AsyncClient:
    """`AsyncClient(base_url, api_key, company_id=None)`: Client's methods, awaited; list() and
    events() are async iterators. Use `async with`, or await aclose()."""

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
        self._http = httpx.AsyncClient(**self._config.httpx_options())
        self.webhooks = AsyncWebhooks(self._call, self._routes)  # completion webhooks
        self.schedules = AsyncSchedules(self._call, self._routes)  # periodic jobs

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- jobs ------------------------------------------------------------------------------

    async def submit(
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
        call = (await self._routes()).submit(
            job_type,
            input,
            source_task_id=source_task_id,
            priority=priority,
            run_at=run_at,
            max_attempts=max_attempts,
            timeout_seconds=timeout_seconds,
            idempotency_key=idempotency_key,
        )
        result: JobDict = await self._call(call)
        return result

    async def get(self, job_id: str) -> JobDict:
        result: JobDict = await self._call((await self._routes()).job(job_id))
        return result

    async def list(
        self,
        status: str | None = None,
        job_type: str | None = None,
        source_task_id: str | None = None,
        limit: int | None = None,
        *,
        page_size: int = protocol.DEFAULT_PAGE_SIZE,
    ) -> AsyncIterator[JobDict]:
        """The company's jobs, newest first, at most `limit` (None: all), fetched
        `page_size` at a time as the iteration goes."""
        pager = protocol.Pager(
            await self._routes(),
            status=status,
            job_type=job_type,
            source_task_id=source_task_id,
            limit=limit,
            page_size=page_size,
        )
        while (call := pager.next_call()) is not None:
            for job in pager.take(await self._call(call)):
                yield job

    async def cancel(self, job_id: str) -> JobDict:
        result: JobDict = await self._call((await self._routes()).cancel(job_id))
        return result

    async def retry(self, job_id: str) -> JobDict:
        result: JobDict = await self._call((await self._routes()).retry(job_id))
        return result

    async def cancel_all(
        self,
        status: str | Sequence[str] | None = None,
        *,
        job_type: str | None = None,
        source_task_id: str | None = None,
    ) -> int:
        """Cancel every queued or running job that matches (status: "queued", "running" or
        both; None: both); how many were canceled. Running handlers stop within a second."""
        call = (await self._routes()).bulk(
            "cancel", status=status, job_type=job_type, source_task_id=source_task_id
        )
        count: int = (await self._call(call))["count"]
        return count

    async def retry_all(
        self,
        status: str | Sequence[str] | None = None,
        *,
        job_type: str | None = None,
        source_task_id: str | None = None,
    ) -> int:
        """Queue every failed or canceled job that matches again, attempts reset (status:
        "failed", "canceled" or both; None: both); how many were."""
        call = (await self._routes()).bulk(
            "retry", status=status, job_type=job_type, source_task_id=source_task_id
        )
        count: int = (await self._call(call))["count"]
        return count

    # -- events ----------------------------------------------------------------------------

    def events(
        self, job_id: str | None = None, last_event_id: str | None = None
    ) -> AsyncIterator[Event]:
        """The company's events (job_id None) or one job's, reconnecting by itself; see
        the package docstring for `status` and `reset`."""
        return self._follow(job_id, last_event_id)

    async def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        *,
        on_event: Callable[[Event], None] | None = None,
    ) -> JobDict:
        """Follow the job's stream until it is done, failed or canceled; the final job.
        WaitTimeout after `timeout` seconds. on_event sees each event (progress, say)."""
        async for event in self._follow(job_id, None, timeout=timeout):
            if on_event is not None:
                on_event(event)
        return await self.get(job_id)

    async def _follow(
        self, job_id: str | None, last_event_id: str | None, *, timeout: float | None = None
    ) -> AsyncIterator[Event]:
        follower = self._config.follower(
            await self._routes(), job_id, last_event_id, timeout=timeout
        )
        while not follower.finished:
            try:
                async with self._http.stream(
                    "GET",
                    follower.path,
                    headers=follower.headers(),
                    timeout=self._config.stream_timeout(follower),
                ) as response:
                    if response.status_code != 200:
                        protocol.decode(response.status_code, await response.aread())
                    follower.opened()
                    async for line in response.aiter_lines():
                        for event in follower.feed(line):
                            yield event
                        if follower.finished:
                            return
                follower.ended()
            except httpx.TransportError as exc:
                follower.dropped(protocol.connection_failed(self._config.base_url, exc))
            except Unavailable as exc:
                follower.dropped(exc)
            if not follower.finished:
                await asyncio.sleep(follower.delay())

    # -- assets ----------------------------------------------------------------------------

    async def asset(self, asset_id: str) -> JobDict:
        """An asset's metadata: id, contentType, byteSize, sha256, originalFilename, …"""
        result: JobDict = await self._call((await self._routes()).asset(asset_id))
        return result

    async def download(self, asset_id: str, path: str | os.PathLike[str]) -> Path:
        """Stream the asset to `path` (or into it, when it is a directory), check its
        sha256; ChecksumMismatch, with nothing left on disk, when it differs."""
        content = (await self._routes()).asset_content(asset_id)
        with PartialDownload(path, await self.asset(asset_id)) as part:
            try:
                async with self._http.stream(content.method, content.path) as response:
                    if response.status_code != 200:
                        protocol.decode(response.status_code, await response.aread())
                    async for chunk in response.aiter_bytes():
                        part.write(chunk)  # local disk: a 64 KiB write does not stall the loop
            except httpx.TransportError as exc:
                raise protocol.connection_failed(self._config.base_url, exc) from exc
            return part.finish()

    # -- plumbing --------------------------------------------------------------------------

    async def _routes(self) -> Routes:
        if self._config.routes is not None:
            return self._config.routes
        return self._config.learn_company(await self._call(protocol.WHOAMI))

    async def _call(self, call: Call) -> Any:
        try:
            response = await self._http.request(call.method, call.path, **call.send_options())
        except httpx.TransportError as exc:
            raise protocol.connection_failed(self._config.base_url, exc) from exc
        return protocol.decode(response.status_code, response.content)
