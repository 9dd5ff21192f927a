"""The exceptions skiplock raises for conditions a person can act on.

Each carries one line that names the thing, the value and the fix; `cli.main` prints it and
exits 2, never a traceback.
"""

from __future__ import annotations


class SkiplockError(Exception):
    """Base of every error skiplock reports to a person."""


class ConfigError(SkiplockError):
    """A setting (environment variable or flag) has a value skiplock cannot use."""


class DatabaseUnavailable(SkiplockError):
    """Postgres could not be reached, or refused us."""


class MigrationError(SkiplockError):
    """The migrations could not be found or applied."""


class NotFound(SkiplockError):
    """A company, key or job named on the command line does not exist."""
