"""Job types that ship with skiplock, each a real renderer run as a child process.

Importing this package registers them; workers and the API always load it.
"""

from skiplock.builtin import diagram, video

__all__ = ["diagram", "video"]
