"""Every storage backend a process can reach, by provider: the one place that resolves
`assets.provider` to a backend.

New outputs go to the backend SKIPLOCK_STORAGE names (`default`). Reads and deletes go to
the backend each asset row names, so a deployment that switches backends keeps its older
assets: `postgres` assets are reachable by every process, `s3` assets by processes with the
S3 settings, `local` assets by processes with that SKIPLOCK_STORAGE_DIR. Asking for a
backend this process lacks raises StorageNotConfigured (the API answers 503 with the fix).

    storages = open_registry(settings)
    await storages.check()              # at start: one line and exit 2 if S3 is unusable
    await storages.delete(provider, object_key)
    await storages.aclose()
"""

from __future__ import annotations

from skiplock.errors import ConfigError, SkiplockError
from skiplock.settings import Settings
from skiplock.storage.local import LocalDiskStorage
from skiplock.storage.protocol import Storage


class StorageNotConfigured(SkiplockError):
    """An asset lives in a backend this process has no settings for."""


_FIX = {
    "s3": "set SKIPLOCK_S3_BUCKET and the other SKIPLOCK_S3_* settings on this process",
    "local": "serve it from the host (or with the volume) whose SKIPLOCK_STORAGE_DIR holds it",
}


class StorageRegistry:
    def __init__(self, default: Storage, others: dict[str, Storage] | None = None) -> None:
        self.default = default
        self._by_provider: dict[str, Storage] = {**(others or {}), default.provider: default}

    @property
    def providers(self) -> list[str]:
        return sorted(self._by_provider)

    def find(self, provider: str) -> Storage | None:
        """The backend of this provider, or None when this process has none."""
        return self._by_provider.get(provider)

    def backend(self, provider: str) -> Storage:
        """The backend holding assets of this provider; StorageNotConfigured if none here."""
        found = self._by_provider.get(provider)
        if found is None:
            fix = _FIX.get(provider, "no backend of this skiplock has that name")
            raise StorageNotConfigured(f"this server cannot read storage {provider!r}: {fix}")
        return found

    async def delete(self, provider: str, object_key: str) -> None:
        """Remove a stored object (nothing happens when it is already gone).

        StorageNotConfigured when this process lacks the backend; StorageUnavailable (or
        OSError for `local`) when the store did not answer: the caller keeps whatever record
        lets it try again later.
        """
        await self.backend(provider).delete(object_key)

    async def presigned_url(self, provider: str, object_key: str) -> str | None:
        """A URL the client may GET the bytes from directly, or None to stream them."""
        sign = getattr(self.backend(provider), "presigned_url", None)
        return await sign(object_key) if sign is not None else None

    async def check(self) -> None:
        """Probe the backends that talk to a store (S3): ConfigError in one line if unusable."""
        for backend in self._by_provider.values():
            check = getattr(backend, "check", None)
            if check is not None:
                await check()

    async def aclose(self) -> None:
        """Close what the backends hold open (the postgres backend's pool)."""
        for backend in self._by_provider.values():
            close = getattr(backend, "aclose", None)
            if close is not None:
                await close()


def open_registry(settings: Settings, *, default: Storage | None = None) -> StorageRegistry:
    """The backends of these settings: local always (SKIPLOCK_STORAGE_DIR), postgres whenever
    DATABASE_URL is set, s3 whenever SKIPLOCK_S3_BUCKET is. `default` overrides the backend
    new outputs go to (tests). Nothing is opened or probed until used (or check())."""
    backends: dict[str, Storage] = {"local": LocalDiskStorage(settings.storage_dir)}
    if settings.database_url:
        from skiplock.storage.postgres import PostgresStorage

        backends["postgres"] = PostgresStorage(
            settings.database_url, prepare=settings.prepared_statements
        )
    if settings.storage.s3 is not None:
        from skiplock.storage.s3 import S3Storage

        backends["s3"] = S3Storage(settings.storage.s3)
    chosen = default or backends.get(settings.storage.backend)
    if chosen is None:  # postgres without DATABASE_URL (s3 without a bucket fails earlier)
        raise ConfigError(
            f"skiplock: SKIPLOCK_STORAGE={settings.storage.backend} needs DATABASE_URL"
        )
    return StorageRegistry(chosen, backends)
