"""Handlers for the many-hosts tests (`--handlers storage_handlers`).

`blob` sleeps params.seconds, then returns params.size bytes by path: the worker's pid on
the first line, then bytes derived from the job id, so a download shows which host made it
and a test can recompute its sha256."""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

from skiplock import Output, register
from skiplock.worker.context import JobContext

BLOCK = 1 << 20


def blob_bytes(job_id: str, pid: int, size: int) -> bytes:
    """What job job_id's output is when worker pid makes it (tests recompute it)."""
    head = f"{pid}\n".encode()
    seed = hashlib.sha256(job_id.encode()).digest()
    body = (seed * (size // len(seed) + 1))[: max(size - len(head), 0)]
    return (head + body)[:size] if size >= len(head) else head[:size]


@register("blob")
async def blob(ctx: JobContext, params: dict[str, Any]) -> Output:
    await asyncio.sleep(float(params.get("seconds", 0)))
    size = int(params.get("size", 1000))
    path = ctx.workdir / "blob.bin"
    data = blob_bytes(str(ctx.job_id), os.getpid(), size)
    with path.open("wb") as out:
        for offset in range(0, len(data), BLOCK):
            out.write(data[offset : offset + BLOCK])
    return Output(filename=f"blob-{size}.bin", content_type="application/octet-stream", path=path)


@register("stream")
async def stream(ctx: JobContext, params: dict[str, Any]) -> Output:
    """params.mib MiB written to a file a block at a time (never held whole: RSS tests)."""
    path = ctx.workdir / "stream.bin"
    block = os.urandom(BLOCK)
    with path.open("wb") as out:
        for _ in range(int(params.get("mib", 1))):
            out.write(block)
    return Output(filename="stream.bin", content_type="application/octet-stream", path=path)
