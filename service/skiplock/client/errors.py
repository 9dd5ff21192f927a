"""What the client raises: one class per answer a caller handles differently.

Every error derives from skiplock.SkiplockError. An answer in the API's error shape,
`{"error": {"code", "message"}}`, raises an ApiError (or the subclass for its status)
carrying `status`, `code` and `message`; a server that cannot be reached raises
ConnectionFailed; a download whose bytes do not match the asset's sha256 raises
ChecksumMismatch.
"""

from __future__ import annotations

from typing import Any

from skiplock.errors import SkiplockError

__all__ = [
    "ApiError",
    "ChecksumMismatch",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "QuotaExceeded",
    "SaveFailed",
    "SkiplockError",
    "Unauthorized",
    "Unavailable",
    "WaitTimeout",
    "api_error",
]


class ApiError(SkiplockError):
    """The API answered with an error (`status`, `code`, `message` from its JSON body)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class Unauthorized(ApiError):
    """401: no key, or a key that is malformed, unknown or revoked."""


class Forbidden(ApiError):
    """403: the key belongs to another company."""


class NotFound(ApiError):
    """404: no such job or asset in this company (or an id that is not a UUID)."""


class Conflict(ApiError):
    """409: the job is not in a state that allows this (cancel a done job, retry a queued
    one), or an Idempotency-Key reused with another body."""


class InvalidRequest(ApiError):
    """400, 413, 415 or 422: the request itself is wrong; sending it again will not help."""


class QuotaExceeded(ApiError):
    """429: the company's queued jobs are at its max_queued; submit again once some have
    started (the answer's Retry-After says when to try)."""


class Unavailable(ApiError):
    """503: the API's database is down; the API recovers by itself, retry shortly."""


class ConnectionFailed(SkiplockError):
    """The API could not be reached, or the connection broke mid-answer."""


class ChecksumMismatch(SkiplockError):
    """A downloaded asset's sha256 differs from its metadata; nothing was left on disk."""


class SaveFailed(SkiplockError):
    """A download could not be written to disk (no such folder, no space); nothing was left."""


class WaitTimeout(SkiplockError, TimeoutError):
    """wait() ran out of time before the job finished."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: InvalidRequest,
    415: InvalidRequest,
    422: InvalidRequest,
    429: QuotaExceeded,
    503: Unavailable,
}


def api_error(status: int, body: Any) -> ApiError:
    """The exception for an error answer; a body not in the API's shape (a proxy's HTML
    page, say) still gives an ApiError, with code "http_<status>"."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or f"http_{status}")
        message = str(error.get("message") or "")
    else:
        code, message = f"http_{status}", "the answer is not in the skiplock API's error shape"
    return _BY_STATUS.get(status, ApiError)(status, code, message)
