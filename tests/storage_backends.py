"""Every storage backend as a test fixture: `backend` runs a test once on local files, once
on a real S3 protocol endpoint (moto, with boto3 to see what it holds) and once on the
skiplock database (asset_chunks), with a way to list what the store really holds."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from s3_fixtures import CREDENTIALS, Bucket
from skiplock.storage import LocalDiskStorage, Storage
from skiplock.storage.config import S3Settings
from skiplock.storage.postgres import PostgresStorage
from skiplock.storage.s3 import S3Storage

COMPANY = uuid.UUID("0b7c5a52-6a0e-4a4e-9d3c-5a1f6e2b9c10")


def key(name: str = "out.bin") -> str:
    return f"{COMPANY}/generated/2026/12/04/{uuid.uuid4()}-{name}"


def pattern(size: int) -> bytes:
    """Bytes that differ from offset to offset, so a misplaced slice shows."""
    return (bytes(range(251)) * (size // 251 + 1))[:size]


@dataclass
class Backend:
    storage: Storage
    stored: Callable[[], list[str]]  # what the store really holds, read without skiplock


def s3_storage(bucket: Bucket, **changes: object) -> S3Storage:
    settings = S3Settings(
        bucket=bucket.name,
        endpoint=bucket.endpoint,
        access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    for name, value in changes.items():
        object.__setattr__(settings, name, value)
    return S3Storage(settings)


@pytest.fixture(params=["local", "s3", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        root = tmp_path / "storage"
        yield Backend(
            LocalDiskStorage(root),
            lambda: sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()),
        )
    elif request.param == "s3":
        bucket: Bucket = request.getfixturevalue("bucket")
        yield Backend(s3_storage(bucket), lambda: bucket.keys() + bucket.multipart_uploads())
    else:
        url: str = request.getfixturevalue("database_url")

        def chunk_keys() -> list[str]:
            with psycopg.connect(url) as conn:
                rows = conn.execute("SELECT DISTINCT object_key FROM skiplock.asset_chunks")
                return sorted(row[0] for row in rows)

        yield Backend(PostgresStorage(url), chunk_keys)
