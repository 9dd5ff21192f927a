"""What the commands share: one connection for an action, ids from the command line, the
checks `serve`, `worker` and `dev` make at start."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from psycopg import AsyncConnection

from skiplock import db
from skiplock.errors import ConfigError
from skiplock.settings import Settings

T = TypeVar("T")


def uuid_arg(value: str, what: str) -> uuid.UUID:
    """A command-line id as a UUID, or one line naming what was expected."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ConfigError(f"skiplock: {value!r} is not a {what} (expected a UUID)") from None


def company_arg(value: str | None) -> uuid.UUID | None:
    """`--company ID`: None only when the flag is absent. An empty value (an unset shell
    variable) is refused like any other non-UUID, never read as "every company"."""
    return None if value is None else uuid_arg(value, "company id")


def limit_arg(maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number of at least 1 (and at most `maximum`)."""

    def parse(value: str) -> int:
        number = int(value) if value.isascii() and value.isdigit() else 0
        if number < 1 or (maximum is not None and number > maximum):
            bound = f"from 1 to {maximum}" if maximum is not None else "of at least 1"
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number {bound}")
        return number

    return parse


def with_connection(
    settings: Settings, action: Callable[[AsyncConnection[Any]], Awaitable[T]]
) -> T:
    """Run one async action on one autocommit connection to DATABASE_URL."""

    async def run() -> T:
        conn = await db.connect_async(settings.require_database_url())
        async with conn:
            return await action(conn)

    return asyncio.run(run())


async def check_at_start(settings: Settings) -> None:
    """One line, exit 2, when Postgres is down at start (not the pool's retries), when
    pooling lacks a LISTEN URL, or when the S3 settings do not reach a usable bucket."""
    from skiplock.storage.registry import open_registry

    settings.require_listen_url()
    await (await db.connect_async(settings.require_database_url())).close()
    storages = open_registry(settings)
    try:
        await storages.check()
    finally:
        await storages.aclose()
