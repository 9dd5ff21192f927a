"""What Client and AsyncClient are configured with, and what they derive from it alike."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

import skiplock
from skiplock.client.protocol import Routes
from skiplock.client.sse import EventFollower

CONNECT_SECONDS = 10.0


@dataclass
class ClientConfig:
    base_url: str
    api_key: str
    company_id: uuid.UUID | str | None  # None: asked of GET /whoami before the first use
    timeout: float = 30.0  # per request; streams use their own read timeout
    reconnect_for: float | None = 300.0  # a stream gives up after this long without a link
    routes: Routes | None = field(init=False)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self.routes = Routes(self.company_id) if self.company_id is not None else None

    def learn_company(self, whoami: dict[str, Any]) -> Routes:
        """The routes, once GET /whoami has named the key's company."""
        self.routes = Routes(whoami["companyId"])
        self.company_id = self.routes.company_id
        return self.routes

    def httpx_options(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "headers": {
                "Authorization": f"Bearer {self.api_key}",
                "Accept": "application/json",
                "User-Agent": f"skiplock-client/{skiplock.__version__}",
            },
            "timeout": httpx.Timeout(self.timeout, connect=min(self.timeout, CONNECT_SECONDS)),
        }

    def follower(
        self,
        routes: Routes,
        job_id: str | None,
        last_event_id: str | None,
        *,
        timeout: float | None = None,
    ) -> EventFollower:
        deadline = None if timeout is None else time.monotonic() + timeout
        return EventFollower(
            routes.events_path(job_id),
            job_stream=job_id is not None,
            last_event_id=last_event_id,
            reconnect_for=self.reconnect_for,
            deadline=deadline,
            timeout_message=f"job {job_id} did not finish within {timeout} s",
        )

    def stream_timeout(self, follower: EventFollower) -> httpx.Timeout:
        """A stream may sit idle between keep-alives, but no longer (nor past a deadline)."""
        return httpx.Timeout(self.timeout, connect=CONNECT_SECONDS, read=follower.read_timeout())
