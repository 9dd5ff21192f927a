"""Running the app under uvicorn: `skiplock serve`, and the server `dev` shares.

uvicorn's own signal handling is switched off: on SIGTERM/SIGINT skiplock first sets the
app's `closing` event, so open SSE streams end at once (uvicorn would otherwise wait for
every stream to finish), then tells uvicorn to stop. There is no access log: URLs of the
stream routes can carry `?token=`, which must never be written down.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
import socket
from collections.abc import Callable, Iterator

import uvicorn

from skiplock.api.app import app_limits, create_app
from skiplock.api.protocol import bounded_protocol
from skiplock.errors import ConfigError
from skiplock.limits import ServeLimits
from skiplock.settings import Settings


class QuietServer(uvicorn.Server):
    """A uvicorn Server whose signals are handled by its caller."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def config(app: object, host: str, port: int) -> uvicorn.Config:
    """uvicorn's config for the app: its HTTP protocol bounds request heads and its
    connections are capped, both from the app's settings (limits.py, protocol.py)."""
    state = getattr(app, "state", None)
    settings: Settings = getattr(state, "settings", None) or Settings()
    limits: ServeLimits = getattr(state, "limits", None) or app_limits(settings)
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        http=bounded_protocol(settings.http_max_header_bytes),
        limit_concurrency=limits.max_connections,
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


def listen(host: str, port: int) -> list[socket.socket]:
    """Bound sockets for host:port (one per address the host resolves to), before uvicorn
    starts: a port in use, a privileged port or an unknown host is one line (ConfigError),
    where uvicorn would log `ERROR: [Errno 98]` and exit 3."""
    where = f"{host}:{port}"
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, OverflowError, UnicodeError) as exc:
        raise ConfigError(
            f"skiplock: cannot listen on {where} ({_reason(exc)}); check --host and --port"
        ) from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(addresses):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # as asyncio does: v4 gets a socket of its own
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except (OSError, OverflowError) as exc:
        for sock in sockets:
            sock.close()
        hint = "choose another with --port" if _in_use(exc) else "check --host and --port"
        raise ConfigError(f"skiplock: cannot listen on {where} ({_reason(exc)}); {hint}") from None
    return sockets


def _in_use(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def run_serve(settings: Settings, host: str, port: int) -> int:
    sockets = listen(host, port)
    closing = asyncio.Event()
    server = QuietServer(config(create_app(settings, closing=closing), host, port))

    async def main() -> None:
        def stop() -> None:
            closing.set()
            server.should_exit = True

        on_stop_signals(stop)
        await server.serve(sockets=sockets)

    asyncio.run(main())
    return 0
