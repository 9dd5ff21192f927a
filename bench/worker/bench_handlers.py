"""Handlers for bench/worker/run.py: no-op, so only queue overhead is measured.

`bench_wake` records when its handler started (time.time(), appended to $BENCH_STARTS) so the
bench can compute commit -> handler start; `bench_noop` does nothing at all.
"""

from __future__ import annotations

import os
import time
from typing import Any

from skiplock import register
from skiplock.worker.context import JobContext


@register("bench_noop")
async def bench_noop(ctx: JobContext, params: dict[str, Any]) -> None:
    return None


@register("bench_wake")
async def bench_wake(ctx: JobContext, params: dict[str, Any]) -> None:
    started = time.time()
    fd = os.open(os.environ["BENCH_STARTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{ctx.job_id} {started:.6f}\n".encode())
    finally:
        os.close(fd)
