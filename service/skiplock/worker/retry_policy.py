"""When a failed attempt runs again: exponential backoff with jitter (SPEC §3).

After attempt n the job waits min(2^n, 3600) s times a random factor in [1, 1.25], so a
burst of jobs failing together (a renderer down, say) does not come back all at once.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

MAX_BACKOFF_SECONDS = 3600
JITTER = 0.25


def backoff_seconds(attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after attempt `attempt` (1 = the first run) failed."""
    base = min(2 ** max(attempt, 0), MAX_BACKOFF_SECONDS)
    factor = 1 + JITTER * (rng or random).random()
    return float(base * factor)


def next_run_at(now: datetime, attempt: int, rng: random.Random | None = None) -> datetime:
    """The run_at of the next attempt after attempt `attempt` failed at `now`."""
    return now + timedelta(seconds=backoff_seconds(attempt, rng))
