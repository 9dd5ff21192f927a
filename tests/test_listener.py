"""The LISTEN connection: doorbells arrive, and a half-open connection is noticed and replaced.

A TCP proxy in front of the test server can freeze: it keeps both sockets open but stops
relaying, which is what a half-open connection looks like (no FIN, no RST, no bytes).
"""

from __future__ import annotations

import asyncio
import contextlib

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from skiplock.listener import Listener
from worker_harness import await_for


class FreezableProxy:
    def __init__(self, unix_path: str) -> None:
        self.unix_path = unix_path
        self.frozen = False  # existing connections stop relaying; new ones work
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        up_reader, up_writer = await asyncio.open_unix_connection(self.unix_path)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    while self.frozen and number <= self.frozen_upto:
                        await asyncio.sleep(3600)  # hold the bytes: a silent peer
                    dst.write(data)
                    await dst.drain()

        self._writers += [writer, up_writer]
        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    def freeze_existing(self) -> None:
        self.frozen = True
        self.frozen_upto = self.connections

    async def close(self) -> None:
        self.server.close()
        for writer in self._writers:
            writer.close()


async def test_half_open_listen_connection_is_noticed_and_replaced(database_url: str) -> None:
    params = conninfo_to_dict(database_url)
    proxy = FreezableProxy(f"{params['host']}/.s.PGSQL.{params.get('port') or 5432}")
    port = await proxy.start()
    via_proxy = make_conninfo(database_url, host="127.0.0.1", port=port)
    heard: list[str] = []
    listener = Listener(
        via_proxy,
        ["doorbell"],
        lambda channel, payload: heard.append(payload),
        name="test",
        health_interval=0.5,
        health_timeout=0.5,
    )
    task = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.connected.wait(), 10)
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute("NOTIFY doorbell, 'one'")
            await await_for(lambda: heard == ["one"], timeout=5)
            proxy.freeze_existing()
            # Noticed after 0.5 s of silence + a 0.5 s ping timeout, then reconnected.
            await await_for(lambda: listener.reconnects >= 2, timeout=5)
            await conn.execute("NOTIFY doorbell, 'two'")
            await await_for(lambda: heard == ["one", "two"], timeout=5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await proxy.close()
    assert proxy.connections >= 2
