"""Where the SQL files are: inside the installed package, or in a source checkout.

A wheel carries the top-level sql/ folder as skiplock/sql (see pyproject.toml). An editable
install (pip install -e .) imports skiplock from service/skiplock, where there is no copy, so
it reads the checkout's sql/ folder directly.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def sql_dir() -> Path | None:
    """The folder holding the migrations, or None if this install has none."""
    for candidate in (_PACKAGE_DIR / "sql", _PACKAGE_DIR.parent.parent / "sql"):
        if (candidate / "queries").is_dir():
            return candidate
    return None


def queries_dir() -> Path | None:
    folder = sql_dir()
    return folder / "queries" if folder else None
