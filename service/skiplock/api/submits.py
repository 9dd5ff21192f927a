"""Inserting submitted jobs: the requests that arrive together share one statement.

Every insert rings NOTIFY, and notifying commits are serialised cluster-wide, so with many
clients each commit counts. A submit that arrives while the previous insert is running
waits for it, then goes in with every other submit that arrived meanwhile, in one
statement (sql/queries/insert_jobs.sql): one round trip and one notifying commit for the
lot. A lone client never waits: when nothing is being written, its request writes at once.

One bad row must not fail its neighbours: when the database refuses a statement of several
rows for its data, each row is retried on its own, and only the bad one fails.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from skiplock import store
from skiplock.store import Row

MAX_BATCH = 200
# Request field -> the insert_jobs.sql array it goes into.
COLUMNS = {
    "id": "ids",
    "company_id": "company_ids",
    "job_type": "job_types",
    "input": "inputs",
    "source_task_id": "source_task_ids",
    "priority": "priorities",
    "run_at": "run_ats",
    "max_attempts": "max_attempts",
    "timeout_seconds": "timeouts",
    "idempotency_key": "idempotency_keys",
    "request_sha256": "request_sha256s",
}

_Waiting = tuple[dict[str, Any], "asyncio.Future[Row | None]"]


class SubmitWriter:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool
        self._waiting: list[_Waiting] = []
        self._busy = False  # a statement is being written
        self._rest: asyncio.Task[None] | None = None
        self.statements = 0  # for tests and the curious: how many inserts ran

    async def insert(self, params: dict[str, Any]) -> Row | None:
        """The job's row (id, status, created_at), or None when its idempotency key was
        already taken. Database errors are raised to the caller as they are."""
        future: asyncio.Future[Row | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((params, future))
        if not self._busy:
            # Idle: this request writes its own row, in its own task (a lone client pays
            # no task switch); whatever arrives meanwhile is written by a task of its own.
            self._busy = True
            try:
                await self._write(self._take())
            finally:
                self._hand_on()
        # Shielded: a client that goes away does not take its neighbours' insert with it.
        return await asyncio.shield(future)

    def _take(self) -> list[_Waiting]:
        batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
        return batch

    def _hand_on(self) -> None:
        if self._waiting:
            self._rest = asyncio.create_task(self._write_rest())
        else:
            self._busy = False

    async def _write_rest(self) -> None:
        try:
            while self._waiting:
                await self._write(self._take())
        except BaseException as exc:  # cancelled at shutdown: nobody may wait forever
            _fail(self._waiting, exc)
            self._waiting = []
            raise
        finally:
            self._busy = False

    async def _write(self, batch: list[_Waiting]) -> None:
        try:
            rows = await self._insert([params for params, _ in batch])
        except (psycopg.IntegrityError, psycopg.DataError) as exc:
            if len(batch) == 1:
                _fail(batch, exc)
                return
            companies = _by_company(batch)
            # A refusal is most often one company's (max_queued, a deleted company): the
            # other companies' rows go on together; within the refused company, row by row.
            for group in companies if len(companies) > 1 else [[one] for one in batch]:
                await self._write(group)
            return
        except Exception as exc:  # the database is down, the pool timed out...
            _fail(batch, exc)
            return
        by_id = {row["id"]: row for row in rows}
        for params, future in batch:
            if not future.done():
                future.set_result(by_id.get(params["id"]))

    async def _insert(self, batch: list[dict[str, Any]]) -> list[Row]:
        self.statements += 1
        async with self._pool.connection() as conn:
            if len(batch) == 1:  # plain parameters: cheaper to send than arrays of one
                row = await store.insert_job(conn, batch[0])
                return [row] if row is not None else []
            arrays = {name: [params[field] for params in batch] for field, name in COLUMNS.items()}
            return await store.insert_jobs(conn, arrays)


def _by_company(batch: list[_Waiting]) -> list[list[_Waiting]]:
    groups: dict[Any, list[_Waiting]] = {}
    for waiting in batch:
        groups.setdefault(waiting[0]["company_id"], []).append(waiting)
    return list(groups.values())


def _fail(batch: list[_Waiting], exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
