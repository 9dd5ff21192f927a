"""/metrics (placeholder until implemented)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse


async def metrics_endpoint(request: Request) -> PlainTextResponse:
    return PlainTextResponse("")
