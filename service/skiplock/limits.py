"""The process's own limits: open files, and how many connections and streams `serve` takes.

Each HTTP connection and each SSE stream holds a file descriptor. With the usual soft limit
of 1024 (or a container's 256) and no cap, one key opened 242 streams and then no one's
request got through, while asyncio logged a traceback per refused accept. So at start the
soft RLIMIT_NOFILE is raised to the hard one (unprivileged, always allowed), and what
`serve` accepts is sized to fit in it:

- connections: SKIPLOCK_HTTP_MAX_CONNECTIONS, at most the open-file limit less
  FILES_RESERVED (the pool, the LISTEN connection, logs, asset files being served); past
  it uvicorn answers 503 at once (its `limit_concurrency`);
- SSE streams: at most 3/4 of those connections (SKIPLOCK_SSE_MAX_STREAMS may set fewer),
  so plain requests always have room beside the streams (503 past it);
- SSE streams of one company: SKIPLOCK_SSE_MAX_STREAMS_PER_COMPANY, at most half the
  process's streams, so one tenant never takes them all (429 past it).
"""

from __future__ import annotations

import contextlib
import resource
from dataclasses import dataclass

FILES_RESERVED = 64
STREAM_SHARE = 0.75  # of the connections, at most
COMPANY_SHARE = 0.5  # of the streams, at most


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        # An infinite hard limit may still be refused (above fs.nr_open): keep what we have.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return open_file_limit()


def open_file_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


@dataclass(frozen=True)
class ServeLimits:
    max_connections: int
    max_streams: int
    max_streams_per_company: int


def serve_limits(
    open_files: int, max_connections: int, max_streams: int, max_streams_per_company: int
) -> ServeLimits:
    """What `serve` accepts with this many open files; max_streams 0 means the default."""
    connections = max(1, min(max_connections, open_files - FILES_RESERVED))
    streams_cap = max(1, int(connections * STREAM_SHARE))
    streams = min(max_streams, streams_cap) if max_streams else streams_cap
    per_company = max(1, min(max_streams_per_company, int(streams * COMPANY_SHARE)))
    return ServeLimits(connections, streams, per_company)
