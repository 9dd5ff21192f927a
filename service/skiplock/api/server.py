"""Running the app under uvicorn: `skiplock serve`, and the server `dev` shares.

uvicorn's own signal handling is switched off: on SIGTERM/SIGINT skiplock first sets the
app's `closing` event, so open SSE streams end at once (uvicorn would otherwise wait for
every stream to finish), then tells uvicorn to stop. There is no access log: URLs of the
stream routes can carry `?token=`, which must never be written down.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator

import uvicorn

from skiplock.api.app import create_app
from skiplock.settings import Settings


class QuietServer(uvicorn.Server):
    """A uvicorn Server whose signals are handled by its caller."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def config(app: object, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )


def on_stop_signals(stop: Callable[[], None]) -> None:
    """Call stop() on SIGINT and SIGTERM (from inside the running event loop)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)


def said_not_started(server: uvicorn.Server, host: str, port: int) -> bool:
    """True, after one line on stderr, when the server never listened (port taken, say)."""
    if server.started:
        return False
    print(
        f"skiplock: could not serve on {host}:{port}; is the port in use? "
        "choose another with --port",
        file=sys.stderr,
    )
    return True


def run_serve(settings: Settings, host: str, port: int) -> int:
    closing = asyncio.Event()
    server = QuietServer(config(create_app(settings, closing=closing), host, port))

    async def main() -> None:
        def stop() -> None:
            closing.set()
            server.should_exit = True

        on_stop_signals(stop)
        await server.serve()

    asyncio.run(main())
    return 2 if said_not_started(server, host, port) else 0
