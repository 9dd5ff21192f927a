"""Storage settings (SPEC §6): which backend new outputs go to, and how to reach S3.

Parsed once with the other settings, so a bad or incomplete value stops `serve`, `worker`
and `dev` at start with one line naming the variable, never later in a job. Nothing here
talks to a store (see registry.py for the start-up probe).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from skiplock.errors import ConfigError

BACKENDS = ("local", "s3", "postgres")
DEFAULT_S3_REGION = "us-east-1"
# SigV4 presigned URLs live at most 7 days.
MAX_PRESIGN_SECONDS = 604_800

# AWS's rules for new buckets (3-63 of lowercase letters, digits, dots and hyphens, starting
# and ending with a letter or digit); MinIO, Ceph, R2 and GCS's S3 API accept the same names.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_S3_VARIABLES = (
    "SKIPLOCK_S3_PREFIX",
    "SKIPLOCK_S3_ENDPOINT",
    "SKIPLOCK_S3_REGION",
    "SKIPLOCK_S3_PRESIGN_SECONDS",
)


@dataclass(frozen=True)
class S3Settings:
    """Where the `s3` backend keeps objects, and how /content serves them.

    prefix: put before every object key (SKIPLOCK_S3_PREFIX, default empty); end it with
        `/` to make it a folder. Keys are stored whole in assets.object_key, so changing the
        prefix later leaves older assets readable.
    endpoint: an S3-compatible endpoint URL (SKIPLOCK_S3_ENDPOINT); None means AWS.
    presign_seconds: 0 streams bytes through the API; N > 0 answers /content with a 307 to
        a presigned GET valid N seconds (SKIPLOCK_S3_PRESIGN_SECONDS).
    Credentials are AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN; with
    none set, the store's default chain applies (instance or container role).
    """

    bucket: str
    prefix: str = ""
    endpoint: str | None = None
    region: str = DEFAULT_S3_REGION
    presign_seconds: int = 0
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None

    def __repr__(self) -> str:  # never print a secret
        return (
            f"S3Settings(bucket={self.bucket!r}, prefix={self.prefix!r}, "
            f"endpoint={self.endpoint!r}, region={self.region!r}, "
            f"presign_seconds={self.presign_seconds})"
        )


@dataclass(frozen=True)
class StorageSettings:
    """backend: where new outputs go (SKIPLOCK_STORAGE: local, s3 or postgres).
    s3: set whenever SKIPLOCK_S3_BUCKET is, whatever the backend, so a process can still
    read the `s3` assets of earlier runs after a switch to another backend."""

    backend: str = "local"
    s3: S3Settings | None = None


def load_storage_settings(env: Mapping[str, str]) -> StorageSettings:
    backend = (env.get("SKIPLOCK_STORAGE") or "local").strip().lower()
    if backend not in BACKENDS:
        raise ConfigError(
            f"skiplock: SKIPLOCK_STORAGE={env.get('SKIPLOCK_STORAGE')!r} is not one of "
            f"{', '.join(BACKENDS)} (default local)"
        )
    s3 = _s3_settings(env)
    if backend == "s3" and s3 is None:
        raise ConfigError(
            "skiplock: SKIPLOCK_STORAGE=s3 needs SKIPLOCK_S3_BUCKET (the bucket outputs go to)"
        )
    return StorageSettings(backend=backend, s3=s3)


def _s3_settings(env: Mapping[str, str]) -> S3Settings | None:
    bucket = (env.get("SKIPLOCK_S3_BUCKET") or "").strip()
    if not bucket:
        stray = [name for name in _S3_VARIABLES if (env.get(name) or "").strip()]
        if stray:
            raise ConfigError(
                f"skiplock: {stray[0]} is set but SKIPLOCK_S3_BUCKET is not; "
                "set the bucket too, or unset it"
            )
        return None
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ConfigError(
            f"skiplock: SKIPLOCK_S3_BUCKET={bucket!r} is not a bucket name "
            "(3-63 lowercase letters, digits, dots and hyphens)"
        )
    access_key, secret = _credentials(env)
    return S3Settings(
        bucket=bucket,
        prefix=_prefix(env.get("SKIPLOCK_S3_PREFIX") or ""),
        endpoint=_endpoint(env.get("SKIPLOCK_S3_ENDPOINT")),
        region=_region(env.get("SKIPLOCK_S3_REGION")),
        presign_seconds=_presign_seconds(env.get("SKIPLOCK_S3_PRESIGN_SECONDS")),
        access_key_id=access_key,
        secret_access_key=secret,
        session_token=(env.get("AWS_SESSION_TOKEN") or "").strip() or None,
    )


def _prefix(raw: str) -> str:
    if raw.startswith("/") or "//" in raw or ".." in raw.split("/") or not raw.isprintable():
        raise ConfigError(
            f"skiplock: SKIPLOCK_S3_PREFIX={raw!r} is not a key prefix; use e.g. 'skiplock/' "
            "(no leading '/', no '//' or '..', printable characters)"
        )
    return raw


def _endpoint(raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ConfigError(
            f"skiplock: SKIPLOCK_S3_ENDPOINT={raw!r} is not an http(s) URL of an S3 endpoint "
            "(e.g. https://s3.eu-west-1.amazonaws.com or http://minio:9000); unset it for AWS"
        )
    return raw.strip().rstrip("/")


def _region(raw: str | None) -> str:
    if raw is None or not raw.strip():
        return DEFAULT_S3_REGION
    if not _REGION.fullmatch(raw.strip()):
        raise ConfigError(
            f"skiplock: SKIPLOCK_S3_REGION={raw!r} is not a region name "
            f"(e.g. eu-west-1; default {DEFAULT_S3_REGION})"
        )
    return raw.strip()


def _presign_seconds(raw: str | None) -> int:
    if raw is None or not raw.strip():
        return 0
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_PRESIGN_SECONDS:
        raise ConfigError(
            f"skiplock: SKIPLOCK_S3_PRESIGN_SECONDS={raw!r} is not a whole number of seconds "
            f"between 0 and {MAX_PRESIGN_SECONDS} (default 0: the API streams the bytes)"
        )
    return value


def _credentials(env: Mapping[str, str]) -> tuple[str | None, str | None]:
    access_key = (env.get("AWS_ACCESS_KEY_ID") or "").strip() or None
    secret = (env.get("AWS_SECRET_ACCESS_KEY") or "").strip() or None
    if (access_key is None) != (secret is None):
        missing = "AWS_SECRET_ACCESS_KEY" if secret is None else "AWS_ACCESS_KEY_ID"
        raise ConfigError(
            f"skiplock: {missing} is not set but its pair is; S3 credentials need both "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or neither, for an instance role)"
        )
    return access_key, secret
