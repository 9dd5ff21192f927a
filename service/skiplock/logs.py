"""Log lines a person can follow and a machine can parse: `key=value` pairs after a message.

    2026-11-23T10:00:00.123Z INFO job done job_id=… job_type=diagram company_id=… attempt=1
        duration_ms=84  (one line)

SKIPLOCK_LOG_LEVEL (debug, info, warning, error; default info) sets the level.

asyncio's own errors go through the same handler, each distinct one at most once every
REPEAT_SECONDS: out of file descriptors, asyncio logs a traceback for every accept it
retries, and a `serve` under attack wrote 88 MB of them in 30 s.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Any

REPEAT_SECONDS = 10.0


class _UtcFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


class Repeats(logging.Filter):
    """Lets each message (by its first line) through at most once every `seconds`; the
    next one that passes says how many were held back meanwhile."""

    MAX_KEYS = 1000

    def __init__(self, seconds: float = REPEAT_SECONDS) -> None:
        super().__init__()
        self._seconds = seconds
        self._seen: dict[str, tuple[float, int]] = {}  # first line -> (last let through, held)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        key = message.partition("\n")[0][:200]
        now = time.monotonic()
        last, held = self._seen.get(key, (-math.inf, 0))
        if now - last < self._seconds:
            self._seen[key] = (last, held + 1)
            return False
        if len(self._seen) >= self.MAX_KEYS:
            self._seen.clear()
        self._seen[key] = (now, 0)
        if held:
            record.msg = f"{message} ({held} more like it held back in {self._seconds:g} s)"
            record.args = ()
        return True


def configure(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_UtcFormatter("%(asctime)s %(levelname)s %(message)s"))
    for name, floor in (
        ("skiplock", level.upper()),
        ("psycopg", "WARNING"),
        ("asyncio", "WARNING"),
    ):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(max(logging.getLevelName(floor), logging.getLevelName(level.upper())))
        logger.propagate = False
    asyncio_log = logging.getLogger("asyncio")
    if not any(isinstance(f, Repeats) for f in asyncio_log.filters):
        asyncio_log.addFilter(Repeats())


def fields(**values: Any) -> str:
    """`k=v k2=v2`, quoting values with spaces so a line stays parseable."""
    parts = []
    for key, value in values.items():
        if value is None:
            continue
        text = str(value)
        if not text or any(c in text for c in ' "='):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)
