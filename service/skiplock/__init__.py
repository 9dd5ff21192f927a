"""skiplock: a Postgres-native job queue service.

The public API for handler authors:

    from skiplock import register, Output, PermanentError
"""

from skiplock.errors import SkiplockError
from skiplock.handlers import Output, PermanentError, register

__all__ = ["Output", "PermanentError", "SkiplockError", "__version__", "register"]
__version__ = "0.1.0"
