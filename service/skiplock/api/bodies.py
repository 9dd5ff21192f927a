"""Reading a JSON request body safely: media type, size while reading, syntax, and what
Postgres's jsonb cannot store, each with its SPEC §4 status (415, 413, 400, 422)."""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.requests import Request

from skiplock.api.errors import ApiError

MAX_BODY_BYTES = 1 << 20  # 1 MiB
MAX_DEPTH = 64


def _is_json_media_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def read_json(request: Request) -> Any:
    if not _is_json_media_type(request.headers.get("content-type", "")):
        raise ApiError(415, "send the body as JSON (Content-Type: application/json)")
    declared = request.headers.get("content-length", "")
    if (
        declared.isascii()
        and declared.isdigit()
        and (len(declared) > 9 or int(declared) > MAX_BODY_BYTES)
    ):
        raise ApiError(413, f"the body is larger than {MAX_BODY_BYTES} bytes (1 MiB)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:  # refused while reading, never buffered whole
            raise ApiError(413, f"the body is larger than {MAX_BODY_BYTES} bytes (1 MiB)")
    try:
        text = body.decode("utf-8")
        walk = not _plainly_storable(text)
        try:
            value = _loads(text)
        except _OutOfRange:  # valid JSON: read it again for the walk to name the place
            value, walk = _PLAIN_DECODER.decode(text), True
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ApiError(400, f"the body is not valid JSON ({_reason(exc)})") from None
    if walk:
        check_storable(value)
    return value


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class _OutOfRange(Exception):
    """A number the decoder read as a float outside a double's range (1e999 becomes inf),
    which Postgres's jsonb refuses."""


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _OutOfRange(text)
    return value


# Floats are checked as they are read (ints are exact in Python and in jsonb's numeric), so
# only a body that holds an out-of-range one pays for the walk.
_DECODER = json.JSONDecoder(parse_constant=_no_constants, parse_float=_finite_float)
_PLAIN_DECODER = json.JSONDecoder(parse_constant=_no_constants)
_BOM = "\ufeff"


def _loads(text: str) -> Any:
    """json.loads(text, parse_constant=_no_constants), but with one decoder made once:
    json.loads builds a new decoder (and scanner) on every call given an argument."""
    if text.startswith(_BOM):  # what json.loads refuses before decoding
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return _DECODER.decode(text)


def _plainly_storable(text: str) -> bool:
    """True when the JSON text alone shows check_storable would pass, without a walk.

    A NUL or a lone surrogate can only reach a parsed string through a \\u escape: the
    decoder refuses raw control characters, and valid UTF-8 never decodes to a surrogate.
    Nesting N deep takes at least N brackets or braces (strings can only add more).
    Out-of-range numbers were refused while decoding (_finite_float).
    """
    return "\\u" not in text and text.count("[") + text.count("{") <= MAX_DEPTH


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return f"nested deeper than {MAX_DEPTH}"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8"
    return str(exc).split(":")[0]


def check_storable(value: Any) -> None:
    """422 for JSON that Postgres's jsonb cannot store, or nested deeper than MAX_DEPTH,
    naming where in the body it is (`input.frames[3].x`)."""
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(value, 1, ())]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise ApiError(422, f"JSON nested deeper than {MAX_DEPTH} arrays and objects")
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in children:
                if isinstance(key, str):
                    _check_text(key, path)
                stack.append((child, depth + 1, (*path, key)))
        elif isinstance(item, str):
            _check_text(item, path)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ApiError(
                422,
                f"{_where(path)} is a number outside the range Postgres stores for JSON "
                "(a double, at most about 1.8e308 in size)",
            )


def _where(path: tuple[str | int, ...]) -> str:
    """A path in the body as a person writes it: input.frames[3].x (keys cut at 100 chars)."""
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else f".{step[:100]}"
    return text.lstrip(".") or "the body"


def _check_text(text: str, path: tuple[str | int, ...]) -> None:
    if "\x00" in text:
        raise ApiError(
            422, f"{_where(path)}: JSON strings cannot contain \\u0000 (Postgres cannot store it)"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(
            422,
            f"{_where(path)}: JSON strings cannot contain lone surrogates (\\ud800-\\udfff)",
        ) from None
