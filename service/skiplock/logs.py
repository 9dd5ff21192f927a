"""Log lines a person can follow and a machine can parse: `key=value` pairs after a message.

    2026-11-23T10:00:00.123Z INFO job done job_id=… job_type=diagram company_id=… attempt=1
        duration_ms=84  (one line)

SKIPLOCK_LOG_LEVEL (debug, info, warning, error; default info) sets the level.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any


class _UtcFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


def configure(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_UtcFormatter("%(asctime)s %(levelname)s %(message)s"))
    for name, floor in (("skiplock", level.upper()), ("psycopg", "WARNING")):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(max(logging.getLevelName(floor), logging.getLevelName(level.upper())))
        logger.propagate = False


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
