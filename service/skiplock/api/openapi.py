"""/openapi.json (placeholder until implemented)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(
        {"openapi": "3.1.0", "info": {"title": "skiplock", "version": "0"}, "paths": {}}
    )
