"""skiplock: a Postgres-native job queue service.

The public API for handler authors (register, Output, PermanentError) lands with the
worker; the rest of the package is internal.
"""

from skiplock.errors import SkiplockError

__all__ = ["SkiplockError", "__version__"]
__version__ = "0.1.0"
