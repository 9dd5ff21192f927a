"""A minimal webhook receiver for bench/webhooks/run.py: HTTP/1.1 keep-alive on asyncio,
answers 200 at once, appends `<path> <eventId> <arrival time.time()>` per delivery to a file
(the bench gives each run's webhook a path of its own).

    python bench/webhooks/receiver.py PORT LOG

Deliberately lean (no framework), so the receiver is not what the figures measure.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, log: int) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            arrived = time.time()
            path = head.split(b" ", 2)[1].decode()
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            event_id = json.loads(body)["eventId"]
            os.write(log, f"{path} {event_id} {arrived:.6f}\n".encode())
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int, path: str) -> None:
    log = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    server = await asyncio.start_server(lambda r, w: handle(r, w, log), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
