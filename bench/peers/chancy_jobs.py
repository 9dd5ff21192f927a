"""The no-op job the chancy worker processes of chancy_driver.py run.

Its only work is to record when it started: `time.time()` and its `seq` argument (-1 when not
given) appended as one line to `$CHANCY_BENCH_DIR/starts-<pid>.txt`, one file per worker
process. The driver imports this module too, so the job's importable name is
`chancy_jobs.record` in both.
"""

from __future__ import annotations

import os
import time


async def record(seq: int = -1) -> None:
    started = time.time()
    path = os.path.join(os.environ["CHANCY_BENCH_DIR"], f"starts-{os.getpid()}.txt")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{seq} {started:.6f}\n".encode())
    finally:
        os.close(fd)
