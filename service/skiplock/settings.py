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

DEFAULT_STORAGE_DIR = Path(".skiplock/storage")
DEFAULT_GENERATED_ASSET_MAX_BYTES = 524_288_000  # 500 MiB
DEFAULT_LEASE_SECONDS = 30
DEFAULT_EVENT_RETENTION_DAYS = 7


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
    cors_origins: browser origins allowed to call the API (SKIPLOCK_CORS_ORIGINS).
    log_level: debug, info, warning or error (SKIPLOCK_LOG_LEVEL, default info).
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
    cors_origins: tuple[str, ...] = field(default=())
    log_level: str = "info"
    webhook_allow_private: bool = False

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with the given fields replaced (flags override the environment)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

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
        cors_origins=_comma_list(env.get("SKIPLOCK_CORS_ORIGINS")),
        log_level=_log_level(env.get("SKIPLOCK_LOG_LEVEL")),
        webhook_allow_private=_boolean(env, "SKIPLOCK_WEBHOOK_ALLOW_PRIVATE", default=False),
    )


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


def _database_url(raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    try:
        conninfo_to_dict(raw)
    except Exception as exc:  # psycopg raises ProgrammingError with libpq's reason
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        # libpq quotes the whole URI back, password and all: never print it.
        reason = re.sub(r'\s*in URI: ".*"', "", reason.replace(raw, "<DATABASE_URL>"))
        raise ConfigError(
            f"skiplock: DATABASE_URL is not a valid libpq connection string ({reason}); "
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
