"""Handlers for bench/soak/run.py: every job leaves what a real one leaves behind.

`soak` stores a 2 KiB output (an asset row and a file), reports progress once, and fails
permanently when its input says so, so the purge meets done and failed jobs, with and
without outputs, as in production.
"""

from __future__ import annotations

from typing import Any

from skiplock import Output, PermanentError, register
from skiplock.worker.context import JobContext


@register("soak")
async def soak(ctx: JobContext, params: dict[str, Any]) -> Output:
    await ctx.progress(0.5, "half way")
    if params.get("fail"):
        raise PermanentError("asked to fail")
    return Output(filename="soak.txt", content_type="text/plain", data=b"x" * 2048)
