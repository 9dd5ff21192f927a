"""List pages bounded by bytes as well as by `limit` (SPEC §4).

A job's input may be 1 MiB, so `?limit=200` could be a 200 MiB body: built as one dict and
serialized on the event loop, 8 such requests at once took `serve` to 2.1 GB and held every
other request up for 4.6 s. A page is built here instead:

- rows are streamed from Postgres one at a time (psycopg's single-row mode), with their
  jsonb columns as the JSON text Postgres sends, never parsed into Python objects;
- each item is serialized as it arrives, the input's text spliced in as it is, so its size
  is known at once and the work per row is a copy, not a parse and a dump;
- the page ends at `limit` items, or before the item that would take it past
  PAGE_MAX_BYTES (it always holds at least one), with `nextCursor` set; the query is then
  cancelled, and the rows not read are never held.

So a page holds at most PAGE_MAX_BYTES plus one item (an input is at most the 1 MiB body
limit) however large `limit` and the inputs are.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, Callable
from typing import Any

from psycopg import AsyncConnection
from psycopg.adapt import Buffer, Loader
from psycopg.rows import dict_row

from skiplock import store

PAGE_MAX_BYTES = 4 << 20  # 4 MiB
RAW_JSON_COLUMNS = ("input", "progress")

Row = dict[str, Any]
ToJson = Callable[[Row], dict[str, Any]]


class _RawJson(Loader):
    """jsonb as the JSON text Postgres sent (text format): not parsed."""

    def load(self, data: Buffer) -> str:
        return bytes(data).decode("utf-8")


async def stream_rows(
    conn: AsyncConnection[Any], name: str, params: dict[str, Any]
) -> AsyncGenerator[Row, None]:
    """The rows of named query `name`, one at a time, jsonb columns as raw JSON text."""
    async with conn.cursor(row_factory=dict_row) as cur:
        cur.adapters.register_loader("jsonb", _RawJson)
        async for row in cur.stream(store.query(name), params):
            yield row


def item_bytes(row: Row, to_json: ToJson) -> bytes:
    """to_json(row) as JSON bytes, its raw JSON columns spliced in unparsed (they come last)."""
    raw = {name: row[name] for name in RAW_JSON_COLUMNS}
    fields = to_json({**row, **dict.fromkeys(raw)})
    for name in raw:
        del fields[name]
    head = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))[:-1]
    tail = "".join(
        f',"{name}":{value if value is not None else "null"}' for name, value in raw.items()
    )
    return f"{head}{tail}}}".encode()


async def bounded_page(
    rows: AsyncGenerator[Row, None], limit: int, to_json: ToJson, max_bytes: int = PAGE_MAX_BYTES
) -> tuple[list[bytes], Row | None]:
    """Up to `limit` items from rows, within max_bytes; and the last row included when more
    rows follow (the next page goes on after it), else None. rows is closed on return, which
    cancels the query while its connection is still ours."""
    items: list[bytes] = []
    size, last = 0, None
    async with contextlib.aclosing(rows):
        async for row in rows:
            if len(items) == limit:
                return items, last
            item = item_bytes(row, to_json)
            if items and size + len(item) > max_bytes:
                return items, last
            items.append(item)
            size += len(item) + 1
            last = row
    return items, None


def page_body(items: list[bytes], next_cursor: str | None) -> bytes:
    return (
        b'{"items":['
        + b",".join(items)
        + b'],"nextCursor":'
        + json.dumps(next_cursor).encode()
        + b"}"
    )
