"""What handler code hands to Postgres, made storable: the one place texts are cleaned.

Handlers are other people's code, fed by tenants: an error message may carry a child's
stderr (NUL bytes and all), a progress message or a file name may hold a lone surrogate
(`os.fsdecode(b"caf\\xe9.txt")` is `'caf\\udce9.txt'`). Postgres refuses NUL in `text` and
`jsonb`, and psycopg cannot encode a lone surrogate, so one such character used to make a
whole completion batch fail for good. Every text the worker writes (error messages,
progress messages, asset file names and content types) passes through `clean_text` first:
NUL and lone surrogates become U+FFFD, and the length is bounded, so a handler that puts
a megabyte of stderr in its exception does not put it in every event and log line.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

# Bounds, in characters. An error message keeps its head (the exception's own words) and
# ctx.run keeps 2,000 characters of stderr tail inside it; a progress message is a status
# line written up to once a second; a file name longer than a file system allows (255
# bytes) cannot be saved by whoever downloads it under that name.
MAX_ERROR_MESSAGE = 4000
MAX_PROGRESS_MESSAGE = 1000
MAX_FILENAME = 255
MAX_CONTENT_TYPE = 255
DEFAULT_CONTENT_TYPE = "application/octet-stream"
REPLACEMENT = "\ufffd"
ELLIPSIS = "…"

# NUL and the UTF-16 surrogate range: neither can be stored as Postgres text.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# A media type is printable ASCII (it becomes a Content-Type header): type/subtype; params.
_MEDIA_TYPE = re.compile(r"[!-~]+/[!-~]+(?:[ \t]*;[ -~]*)?")


def clean_text(value: object, max_chars: int) -> str:
    """value as a string Postgres stores: NUL and lone surrogates replaced by U+FFFD, cut to
    max_chars (ending in an ellipsis when cut)."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > max_chars:
        text = text[: max_chars - 1] + ELLIPSIS
    return _UNSTORABLE.sub(REPLACEMENT, text)


def clean_error_message(message: str | None) -> str | None:
    return None if message is None else clean_text(message, MAX_ERROR_MESSAGE)


def clean_filename(filename: object) -> str:
    return clean_text(filename, MAX_FILENAME) or "output"


def clean_content_type(content_type: object) -> str:
    """A printable-ASCII media type, else application/octet-stream (the API serves it as the
    Content-Type header, where a control character would break the response)."""
    text = clean_text(content_type, MAX_CONTENT_TYPE).strip()
    return text if _MEDIA_TYPE.fullmatch(text) else DEFAULT_CONTENT_TYPE


def clean_progress(value: dict[str, Any]) -> dict[str, Any]:
    """A progress value ({fraction, message?}) with its message cleaned."""
    message = value.get("message")
    if message is None:
        return value
    return {**value, "message": clean_text(message, MAX_PROGRESS_MESSAGE)}


def is_transient(exc: BaseException) -> bool:
    """True when a failed write may work unchanged later (the connection, the server, a
    lock); False when Postgres or psycopg refused the data itself (DataError, an encoding
    error, …): retrying that batch as it is would fail forever."""
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
