"""The API's one error shape, `{"error": {"code", "message"}}`, and what maps onto it.

Routes raise ApiError; Starlette's own 404/405, a database that is down (503) and anything
unexpected are turned into the same shape by the handlers registered in create_app, so no
response ever leaves without a JSON body a client can act on.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "invalid",
    429: "quota_exceeded",
    431: "headers_too_large",
    503: "database_unavailable",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or HTTP_CODES.get(status, "error")
        self.message = message
        self.headers = headers


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def not_found(what: str = "not found") -> ApiError:
    return ApiError(404, what)


async def on_api_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, ApiError):  # registered for ApiError only
        return await on_unexpected(request, exc)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def on_http_exception(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):  # registered for HTTPException only
        return await on_unexpected(request, exc)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    code = HTTP_CODES.get(exc.status_code, "error")
    message = "no such route" if exc.status_code == 404 else str(exc.detail)
    return error_response(exc.status_code, code, message, dict(exc.headers or {}))


async def on_database_error(request: Request, exc: Exception) -> Response:
    log.warning(
        "database unavailable for %s %s: %s", request.method, request.url.path, type(exc).__name__
    )
    return error_response(
        503,
        "database_unavailable",
        "the database is unavailable; retry shortly",
        {"Retry-After": "1"},
    )


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error in %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "unexpected error; see the server log")


def exception_handlers() -> dict[Any, Any]:
    # Not Exception: Starlette hands that to its outermost middleware, which answers 500
    # and then re-raises, and uvicorn closes a connection whose app raised: the client's
    # keep-alive connection would die with the request. ContainErrors answers instead.
    return {
        ApiError: on_api_error,
        HTTPException: on_http_exception,
        psycopg.OperationalError: on_database_error,
        PoolTimeout: on_database_error,
    }


class ContainErrors:
    """Turns an unexpected exception into the 500 JSON answer and ends the request there.

    A bug costs one request, not the client's connection. Only when the response had
    already begun (a stream broke midway) does the exception go on, so uvicorn closes
    the connection: the client must not take half a body for a whole one.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                raise
            response = await on_unexpected(Request(scope), exc)
            await response(scope, receive, send)
