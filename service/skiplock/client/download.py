"""Writing a downloaded asset to disk: all of it, checked, or nothing.

The bytes go to a hidden temporary file beside the target, hashed on the way; only when
their sha256 matches the asset's metadata is the file renamed into place (atomically, so a
reader never sees half a file). On a mismatch or any error the temporary file is removed.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from types import TracebackType
from typing import Any

from skiplock.client.errors import ChecksumMismatch, SaveFailed


class PartialDownload:
    """`with PartialDownload(path, asset) as part: part.write(chunk)…; part.finish()`."""

    def __init__(self, path: str | os.PathLike[str], asset: dict[str, Any]) -> None:
        self.asset = asset
        self.target = _target(Path(path), asset)
        self._hash = hashlib.sha256()
        # Not tempfile.mkstemp: its mode 0600 would stay on the renamed file; this one
        # gets the umask's usual permissions, as any file the user saves.
        self._temporary = self.target.parent / f".{self.target.name}.{secrets.token_hex(4)}.part"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        try:
            self._file = os.fdopen(os.open(self._temporary, flags, 0o666), "wb")
        except OSError as exc:
            raise _save_failed(self.target, exc) from exc

    def __enter__(self) -> PartialDownload:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
            if isinstance(exc, OSError):  # a full disk, say: one clear error, no half file
                raise _save_failed(self.target, exc) from exc

    def write(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self._file.write(chunk)

    def finish(self) -> Path:
        """Rename into place when the sha256 matches; ChecksumMismatch (and no file) if not."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        expected, actual = str(self.asset.get("sha256", "")), self._hash.hexdigest()
        if actual != expected:
            self.abort()
            raise ChecksumMismatch(
                f"asset {self.asset.get('id')}: the downloaded bytes have sha256 {actual}, "
                f"the asset says {expected}; nothing was written"
            )
        os.replace(self._temporary, self.target)
        return self.target

    def abort(self) -> None:
        self._file.close()
        self._temporary.unlink(missing_ok=True)


def _target(path: Path, asset: dict[str, Any]) -> Path:
    """path itself, or inside a directory the asset's own file name (without any folders)."""
    if path.is_dir():
        name = Path(str(asset.get("originalFilename") or asset.get("id") or "asset")).name
        return path / (name if name not in ("", ".", "..") else "asset")
    return path


def _save_failed(target: Path, exc: OSError) -> SaveFailed:
    return SaveFailed(f"cannot write {target} ({exc.strerror or exc})")
