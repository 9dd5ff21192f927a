"""Time-ordered ids for jobs and assets: version 7 uuids (RFC 9562).

Every state change of a job adds an entry for its id to the primary key and to the event
log's job index (SPEC indexes `status`, so no update of a job is a HOT update). Random ids
scatter those entries over the whole index; ids that grow with time keep the jobs a claim
takes side by side. sql/0010.time-ordered-job-ids.sql has the SQL twin, `new_job_id()`,
and the measurement.
"""

from __future__ import annotations

import os
import time
import uuid

_VERSION_7 = 0x7 << 76
_VARIANT = 0b10 << 62
_RANDOM_BITS = (1 << 62) - 1


def uuid7() -> uuid.UUID:
    """48 bits of Unix time in ms, the version, 12 bits of the sub-millisecond fraction,
    the variant and 62 random bits. The order only places index entries: nothing relies
    on it (a clock that steps back makes ids out of order, and that is all)."""
    ms, ns = divmod(time.time_ns(), 1_000_000)
    fraction = ns * 4096 // 1_000_000
    random = int.from_bytes(os.urandom(8), "big") & _RANDOM_BITS
    return uuid.UUID(int=(ms << 80) | _VERSION_7 | (fraction << 64) | _VARIANT | random)
