"""Where job outputs (assets) go: the Storage protocol and its backends, one module each
(local.py, s3.py, postgres.py), and registry.py, which resolves an asset's provider."""

from skiplock.storage.local import LocalDiskStorage
from skiplock.storage.protocol import (
    CHUNK_SIZE,
    AssetTooLarge,
    Storage,
    StorageUnavailable,
    StoredObject,
    attachment_disposition,
    bytes_chunks,
    file_chunks,
    object_key_for,
    safe_filename,
)

__all__ = [
    "CHUNK_SIZE",
    "AssetTooLarge",
    "LocalDiskStorage",
    "Storage",
    "StorageUnavailable",
    "StoredObject",
    "attachment_disposition",
    "bytes_chunks",
    "file_chunks",
    "object_key_for",
    "safe_filename",
]
