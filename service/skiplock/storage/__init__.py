"""Where job outputs (assets) go: the Storage protocol and its backends, one module each."""

from skiplock.storage.local import LocalDiskStorage
from skiplock.storage.protocol import (
    CHUNK_SIZE,
    AssetTooLarge,
    Storage,
    StoredObject,
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
    "StoredObject",
    "bytes_chunks",
    "file_chunks",
    "object_key_for",
    "safe_filename",
]
