"""A small SSE reader for tests: frames as (id, event, data) while a task collects them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from worker_harness import await_for


@dataclass
class Frame:
    event: str
    data: Any
    id: str | None = None
    raw: str = ""  # the data line(s) as sent


@dataclass
class Stream:
    frames: list[Frame] = field(default_factory=list)
    comments: int = 0
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    status_code: int = 0
    opened: asyncio.Event = field(default_factory=asyncio.Event)

    def events(self, prefix: str = "content_job.") -> list[Frame]:
        return [f for f in self.frames if f.event.startswith(prefix)]

    def ids(self) -> list[int]:
        return [int(f.id) for f in self.frames if f.id is not None]


async def _parse(lines: AsyncIterator[str], stream: Stream) -> None:
    event, data, frame_id = "message", [], None
    async for line in lines:
        if line == "":
            if data:
                text = "\n".join(data)
                stream.frames.append(Frame(event, json.loads(text), frame_id, text))
            event, data, frame_id = "message", [], None
        elif line.startswith(":"):
            stream.comments += 1
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                frame_id = value


@contextlib.asynccontextmanager
async def open_stream(client: httpx.AsyncClient, url: str, **kwargs: Any) -> AsyncIterator[Stream]:
    """Read the stream in a background task until it ends or the block exits."""
    stream = Stream()

    async def read() -> None:
        try:
            async with client.stream(
                "GET", url, timeout=httpx.Timeout(60, read=None), **kwargs
            ) as response:
                stream.status_code = response.status_code
                stream.opened.set()
                if response.status_code == 200:
                    await _parse(response.aiter_lines(), stream)
                else:
                    await response.aread()
        except (httpx.RemoteProtocolError, httpx.ReadError):
            pass
        finally:
            stream.opened.set()
            stream.ended.set()

    task = asyncio.create_task(read())
    try:
        await asyncio.wait_for(stream.opened.wait(), 10)
        yield stream
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# Tests wait on streams with the harness's poller.
until = await_for
