"""Settings: the environment (and command-line flags) turned into one frozen, validated object.

Every value is checked once, here, so a bad one stops the command with a single line that
names the variable, the value and what is expected, before anything else happens.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from skiplock.errors import ConfigError
from skiplock.storage.config import StorageSettings, load_storage_settings

DEFAULT_STORAGE_DIR = Path(".skiplock/storage")
DEFAULT_GENERATED_ASSET_MAX_BYTES = 524_288_000  # 500 MiB
DEFAULT_LEASE_SECONDS = 30
DEFAULT_EVENT_RETENTION_DAYS = 7
# Children of ctx.run (renderers): 4K video with x264 capped at 4 threads writes 544 MiB,
# a diagram at the default pixel budget ~260 MiB; the CPU time covers the largest video
# (5 minutes of 4K at 60 fps: ~340 CPU-seconds measured on 2 cores).
DEFAULT_CHILD_MEMORY_MB = 1024
DEFAULT_CHILD_CPU_SECONDS = 600
DEFAULT_RENDER_MAX_PIXELS = 64_000_000  # 8000 x 8000: ~260 MiB and 1.6 s in dot
DEFAULT_HTTP_MAX_HEADER_BYTES = 32_768
DEFAULT_HTTP_MAX_CONNECTIONS = 10_000
DEFAULT_SSE_MAX_STREAMS_PER_COMPANY = 500
POOLING_MODES = ("session", "transaction")


@dataclass(frozen=True)
class Settings:
    """What every skiplock command runs with.

    database_url: libpq URI or key=value string (DATABASE_URL). None when unset: only
        `skiplock dev` can run without it, by starting an embedded Postgres.
    storage_dir: where the local-disk backend keeps assets (SKIPLOCK_STORAGE_DIR).
    handlers: modules that register job handlers (SKIPLOCK_HANDLERS, comma-separated).
    generated_asset_max_bytes: a handler's output larger than this fails the job at once,
        with nothing stored (SKIPLOCK_GENERATED_ASSET_MAX_BYTES, default 500 MiB).
    lease_seconds: how long a claimed job is held without renewal before any worker may
        take it back (SKIPLOCK_LEASE_SECONDS, default 30). Shorter recovers crashed jobs
        sooner; longer survives longer database outages without losing a running job.
    event_retention_days: events of finished jobs older than this are pruned
        (SKIPLOCK_EVENT_RETENTION_DAYS, default 7); a client that reconnects later than
        this gets `event: reset`.
    job_retention_days: finished (done, failed, canceled) jobs whose finished_at is older
        than this are deleted by the workers' housekeeping, with their events, webhook
        deliveries, asset rows and stored bytes (SKIPLOCK_JOB_RETENTION_DAYS, 1..36500; default
        None: keep every job). Shorter keeps the tables and storage small; a job's id, output
        and history answer 404 once it is gone.
    test_job_retention_seconds: the same limit in seconds, overriding job_retention_days
        (SKIPLOCK_TEST_JOB_RETENTION_SECONDS). For tests and the soak in bench/ only.
    cors_origins: browser origins allowed to call the API (SKIPLOCK_CORS_ORIGINS).
    log_level: debug, info, warning or error (SKIPLOCK_LOG_LEVEL, default info).
    child_memory_mb: the memory each child of ctx.run may write, in MiB
        (SKIPLOCK_CHILD_MEMORY_MB, default 1024); 0 lifts the limit.
    child_cpu_seconds: the CPU time each child of ctx.run may use
        (SKIPLOCK_CHILD_CPU_SECONDS, default 600); 0 lifts the limit.
    child_env: more environment variables children of ctx.run inherit (SKIPLOCK_CHILD_ENV).
    render_max_pixels: the largest bitmap (PNG) the built-in renderers draw, in pixels
        (SKIPLOCK_RENDER_MAX_PIXELS, default 64,000,000).
    http_max_header_bytes: a request whose line and headers pass this is answered 431
        (SKIPLOCK_HTTP_MAX_HEADER_BYTES, default 32768).
    http_max_connections: open HTTP connections per `serve` before new requests get 503
        (SKIPLOCK_HTTP_MAX_CONNECTIONS, default 10000; lowered to fit the open-file limit).
    sse_max_streams: open SSE streams per `serve` (SKIPLOCK_SSE_MAX_STREAMS, default 0:
        3/4 of the connections).
    sse_max_streams_per_company: open SSE streams of one company per `serve`
        (SKIPLOCK_SSE_MAX_STREAMS_PER_COMPANY, default 500; at most half the streams).
    storage: where new outputs go and how to reach S3 (SKIPLOCK_STORAGE, SKIPLOCK_S3_*).
    listen_url: where LISTEN connections and migrations go (SKIPLOCK_LISTEN_URL); None means
        DATABASE_URL. A pooler in transaction mode cannot carry LISTEN: point it at Postgres.
    database_pooling: `session` (default) or `transaction` (SKIPLOCK_DATABASE_POOLING):
        with `transaction`, DATABASE_URL may be PgBouncer in transaction pooling, and
        skiplock prepares no statements and keeps no session state on its connections.
    webhook_allow_private: let webhooks reach loopback, private, link-local and multicast
        addresses (SKIPLOCK_WEBHOOK_ALLOW_PRIVATE, default false). Off, a tenant cannot make
        the workers call into the network they run in; on, for receivers on the same host
        or network (development, tests, an internal deployment whose tenants are trusted).
    """

    database_url: str | None = None
    storage_dir: Path = DEFAULT_STORAGE_DIR
    handlers: tuple[str, ...] = ()
    generated_asset_max_bytes: int = DEFAULT_GENERATED_ASSET_MAX_BYTES
    lease_seconds: int = DEFAULT_LEASE_SECONDS
    event_retention_days: int = DEFAULT_EVENT_RETENTION_DAYS
    job_retention_days: int | None = None
    test_job_retention_seconds: int | None = None
    cors_origins: tuple[str, ...] = field(default=())
    log_level: str = "info"
    webhook_allow_private: bool = False
    child_memory_mb: int = DEFAULT_CHILD_MEMORY_MB
    child_cpu_seconds: int = DEFAULT_CHILD_CPU_SECONDS
    child_env: tuple[str, ...] = ()
    render_max_pixels: int = DEFAULT_RENDER_MAX_PIXELS
    http_max_header_bytes: int = DEFAULT_HTTP_MAX_HEADER_BYTES
    http_max_connections: int = DEFAULT_HTTP_MAX_CONNECTIONS
    sse_max_streams: int = 0
    sse_max_streams_per_company: int = DEFAULT_SSE_MAX_STREAMS_PER_COMPANY
    storage: StorageSettings = field(default_factory=StorageSettings)
    listen_url: str | None = None
    database_pooling: str = "session"

    @property
    def prepared_statements(self) -> bool:
        """Whether pooled connections may prepare statements (not through a transaction pooler)."""
        return self.database_pooling == "session"

    def require_listen_url(self) -> str:
        """Where LISTEN connections and migrations go; one line when transaction pooling
        lacks a direct URL (LISTEN through a transaction pooler would hear nothing)."""
        if self.listen_url:
            return self.listen_url
        if self.database_pooling == "transaction":
            raise ConfigError(
                "skiplock: SKIPLOCK_DATABASE_POOLING=transaction needs SKIPLOCK_LISTEN_URL, a "
                "direct connection to Postgres (not the pooler) for LISTEN and migrations"
            )
        return self.require_database_url()

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with the given fields replaced (flags override the environment)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def job_retention_seconds(self) -> int | None:
        """How old a finished job may get before it is deleted, in seconds; None: forever."""
        if self.test_job_retention_seconds is not None:
            return self.test_job_retention_seconds
        return None if self.job_retention_days is None else self.job_retention_days * 86_400

    def require_database_url(self) -> str:
        if not self.database_url:
            raise ConfigError(
                "skiplock: DATABASE_URL is not set; point it at Postgres "
                "(e.g. postgresql://user@localhost/skiplock) or run `skiplock dev`"
            )
        return self.database_url


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every SKIPLOCK_* variable and DATABASE_URL."""
    env = os.environ if environ is None else environ
    return Settings(
        database_url=_database_url(env.get("DATABASE_URL")),
        storage_dir=Path(env.get("SKIPLOCK_STORAGE_DIR") or DEFAULT_STORAGE_DIR),
        handlers=_comma_list(env.get("SKIPLOCK_HANDLERS")),
        generated_asset_max_bytes=_whole_number(
            env,
            "SKIPLOCK_GENERATED_ASSET_MAX_BYTES",
            DEFAULT_GENERATED_ASSET_MAX_BYTES,
            unit="bytes",
            minimum=1,
        ),
        lease_seconds=_whole_number(
            env,
            "SKIPLOCK_LEASE_SECONDS",
            DEFAULT_LEASE_SECONDS,
            unit="seconds",
            minimum=2,
            maximum=86_400,
        ),
        event_retention_days=_whole_number(
            env,
            "SKIPLOCK_EVENT_RETENTION_DAYS",
            DEFAULT_EVENT_RETENTION_DAYS,
            unit="days",
            minimum=1,
            maximum=36_500,
        ),
        job_retention_days=_optional_whole_number(
            env, "SKIPLOCK_JOB_RETENTION_DAYS", unit="days", maximum=36_500
        ),
        test_job_retention_seconds=_optional_whole_number(
            env, "SKIPLOCK_TEST_JOB_RETENTION_SECONDS", unit="seconds", maximum=3_153_600_000
        ),
        cors_origins=_comma_list(env.get("SKIPLOCK_CORS_ORIGINS")),
        log_level=_log_level(env.get("SKIPLOCK_LOG_LEVEL")),
        child_memory_mb=_whole_number(
            env, "SKIPLOCK_CHILD_MEMORY_MB", DEFAULT_CHILD_MEMORY_MB, unit="MiB", minimum=0
        ),
        child_cpu_seconds=_whole_number(
            env,
            "SKIPLOCK_CHILD_CPU_SECONDS",
            DEFAULT_CHILD_CPU_SECONDS,
            unit="seconds",
            minimum=0,
        ),
        child_env=_comma_list(env.get("SKIPLOCK_CHILD_ENV")),
        render_max_pixels=_whole_number(
            env,
            "SKIPLOCK_RENDER_MAX_PIXELS",
            DEFAULT_RENDER_MAX_PIXELS,
            unit="pixels",
            minimum=1,
        ),
        http_max_header_bytes=_whole_number(
            env,
            "SKIPLOCK_HTTP_MAX_HEADER_BYTES",
            DEFAULT_HTTP_MAX_HEADER_BYTES,
            unit="bytes",
            minimum=1024,
            maximum=1 << 20,
        ),
        http_max_connections=_whole_number(
            env,
            "SKIPLOCK_HTTP_MAX_CONNECTIONS",
            DEFAULT_HTTP_MAX_CONNECTIONS,
            unit="connections",
            minimum=1,
        ),
        sse_max_streams=_whole_number(
            env, "SKIPLOCK_SSE_MAX_STREAMS", 0, unit="streams", minimum=0
        ),
        sse_max_streams_per_company=_whole_number(
            env,
            "SKIPLOCK_SSE_MAX_STREAMS_PER_COMPANY",
            DEFAULT_SSE_MAX_STREAMS_PER_COMPANY,
            unit="streams",
            minimum=1,
        ),
        storage=load_storage_settings(env),
        listen_url=_database_url(env.get("SKIPLOCK_LISTEN_URL"), "SKIPLOCK_LISTEN_URL"),
        database_pooling=_pooling(env.get("SKIPLOCK_DATABASE_POOLING")),
        webhook_allow_private=_boolean(env, "SKIPLOCK_WEBHOOK_ALLOW_PRIVATE", default=False),
    )


def _pooling(raw: str | None) -> str:
    if raw is None or not raw.strip():
        return "session"
    if raw.strip().lower() not in POOLING_MODES:
        raise ConfigError(
            f"skiplock: SKIPLOCK_DATABASE_POOLING={raw!r} is not one of session, transaction "
            "(default session; transaction for PgBouncer in transaction pooling mode)"
        )
    return raw.strip().lower()


def _log_level(raw: str | None) -> str:
    levels = ("debug", "info", "warning", "error")
    if raw is None or not raw.strip():
        return "info"
    if raw.strip().lower() not in levels:
        raise ConfigError(
            f"skiplock: SKIPLOCK_LOG_LEVEL={raw!r} is not one of {', '.join(levels)} (default info)"
        )
    return raw.strip().lower()


def _boolean(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ConfigError(
        f"skiplock: {name}={raw!r} is not true or false (default {str(default).lower()})"
    )


def _database_url(raw: str | None, name: str = "DATABASE_URL") -> str | None:
    if raw is None or not raw.strip():
        return None
    try:
        conninfo_to_dict(raw)
    except Exception as exc:  # psycopg raises ProgrammingError with libpq's reason
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        # libpq quotes the whole URI back, password and all: never print it.
        reason = re.sub(r'\s*in URI: ".*"', "", reason.replace(raw, f"<{name}>"))
        raise ConfigError(
            f"skiplock: {name} is not a valid libpq connection string ({reason}); "
            "expected e.g. postgresql://user:password@localhost:5432/skiplock"
        ) from None
    return raw


def _comma_list(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _whole_number(
    env: Mapping[str, str],
    name: str,
    default: int,
    *,
    unit: str,
    minimum: int,
    maximum: int | None = None,
) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(
            f"skiplock: {name}={raw!r} is not a whole number of {unit} (default {default})"
        ) from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ConfigError(
            f"skiplock: {name}={raw!r} is out of range; use {bounds} {unit} (default {default})"
        )
    return value


def _optional_whole_number(
    env: Mapping[str, str], name: str, *, unit: str, maximum: int
) -> int | None:
    """A whole number from 1 to maximum, or None when the variable is unset or empty."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    value = raw.strip()
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= maximum:
        raise ConfigError(
            f"skiplock: {name}={raw!r} is not a whole number of {unit} between 1 and "
            f"{maximum} (unset: keep everything)"
        )
    return int(value)
