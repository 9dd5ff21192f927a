"""Asset routes (placeholder until implemented)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from skiplock.api.errors import ApiError


async def get_asset(request: Request) -> Response:
    raise ApiError(404, "not implemented yet")


async def get_asset_content(request: Request) -> Response:
    raise ApiError(404, "not implemented yet")
