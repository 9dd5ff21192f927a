"""Sending webhook deliveries (SPEC §7): any worker claims due ones and POSTs them.

The rows come from the outbox trigger on content_job_events, written in the same
transaction as the event (sql/0007). A worker claims due deliveries in batches with SKIP
LOCKED (claim_webhook_deliveries.sql), leasing each one for LEASE_SECONDS: a worker killed
mid-attempt leaves it to any worker once the lease passes (at least once). Attempts run as
tasks of their own, at most IN_FLIGHT per process and PER_WEBHOOK per webhook in a process,
never in a handler slot: a receiver that is slow or down costs a few idle sockets, not
claims or completions. While the worker's own claims find a backlog, deliveries yield to
its jobs for up to DEFER_SECONDS. Each attempt has ATTEMPT_SECONDS in all (DNS, connect, TLS, the
answer's status). Outcomes are written in batches (finish_webhook_deliveries.sql), fenced
by attempt and worker.

The sender wakes on NOTIFY webhook_deliveries (rung by the trigger) and polls every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from skiplock import store, webhooks
from skiplock.events import Event, encode_data
from skiplock.logs import fields
from skiplock.worker.webhook_http import Answer, DeliveryFailed, HttpSender

DELIVERIES_CHANNEL = "webhook_deliveries"
ATTEMPT_SECONDS = 10.0
# An attempt (10 s at most) and the write of its outcome, with room for a slow database;
# once it passes, any worker sends the delivery again.
LEASE_SECONDS = 30
IN_FLIGHT = 64  # attempts at once in one worker process
PER_WEBHOOK = 16  # attempts of one webhook at once in one worker process
POLL_SECONDS = 1.0
# While the worker's own claims find a backlog (every slot filled), only deliveries due this
# long ago are claimed: a burst of jobs drains first, and no delivery waits much longer than
# this for a busy worker (measured, bench/webhooks: a 1,000-job drain with a delivery per job
# lost 20-50 % of its rate to them, sent at once, on 2 cores shared with Postgres).
DEFER_SECONDS = 1.0
DEFER_POLL_SECONDS = 0.25
# While deliveries flow, claims and outcome writes each wait this long for company, so a
# busy sender runs about 100 statements a second, not two per delivery (measured: 1,000
# deliveries to a local receiver took 600 statements without it, 126 with it). A doorbell
# is answered at once, so a lone delivery is not held back.
GATHER_SECONDS = 0.01
# After attempt n fails, the next one is due RETRY_DELAYS[n - 1] seconds later (±20 %,
# counted from the end of the failed attempt); after the last, the delivery is failed.
RETRY_DELAYS = (5, 300, 1800, 7200, 18000, 36000, 36000)
JITTER = 0.2
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
ERROR_BODY_CHARACTERS = 200
WRITE_RETRY_DELAYS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
CLOSE_GRACE_SECONDS = 1.0

log = logging.getLogger(__name__)


def next_attempt_at(
    now: datetime, attempts: int, rng: random.Random | None = None
) -> datetime | None:
    """When the attempt after attempt number `attempts` (1 = the first) is due, counted
    from `now`, the end of the failed attempt; None when that was the last one."""
    if not 1 <= attempts <= len(RETRY_DELAYS):
        return None
    factor = 1 + JITTER * (2 * (rng or random).random() - 1)
    return now + timedelta(seconds=RETRY_DELAYS[attempts - 1] * factor)


@dataclass(frozen=True)
class Delivery:
    """A claimed delivery: the event it reports, where to send it, and the attempt."""

    id: uuid.UUID
    webhook_id: uuid.UUID
    attempt: int
    url: str
    secret: str
    event: Event

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Delivery:
        event = Event(
            id=row["event_id"],
            xid=0,
            company_id=row["company_id"],
            job_id=row["job_id"],
            type=row["type"],
            payload=row["payload"],
            created_at=row["event_created_at"],
        )
        return cls(row["id"], row["webhook_id"], row["attempts"], row["url"], row["secret"], event)

    def body(self) -> bytes:
        """The event's SSE data JSON, made by the code the streams use (SPEC §7)."""
        return encode_data(self.event.data()).encode("utf-8")


@dataclass(frozen=True)
class Result:
    delivery_id: uuid.UUID
    attempt: int
    status: str  # delivered, pending (another attempt is due) or failed (the last one)
    next_attempt_at: datetime | None
    status_code: int | None
    error: str | None
    finished_at: datetime


def result_of(
    delivery: Delivery, answer: Answer | None, error: str | None, now: datetime
) -> Result:
    """How an attempt ended: delivered on a 2xx, else the next attempt's time or failed."""
    if answer is not None and 200 <= answer.status < 300:
        return Result(delivery.id, delivery.attempt, "delivered", None, answer.status, None, now)
    if answer is not None:
        error = _http_error(answer)
    retry_at = next_attempt_at(now, delivery.attempt)
    status = "pending" if retry_at is not None else "failed"
    code = answer.status if answer is not None else None
    return Result(delivery.id, delivery.attempt, status, retry_at, code, error, now)


def _http_error(answer: Answer) -> str:
    text = re.sub(r"[\x00-\x1f\x7f\s]+", " ", answer.body.decode("utf-8", "replace")).strip()
    if len(text) > ERROR_BODY_CHARACTERS:
        text = text[: ERROR_BODY_CHARACTERS - 1] + "…"
    hint = " (redirects are not followed)" if 300 <= answer.status < 400 else ""
    return f"HTTP {answer.status}{hint}" + (f": {text}" if text else "")


class DeliverySender:
    """Claims due deliveries and sends them, IN_FLIGHT at most at once."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        worker_id: str,
        *,
        allow_private: bool,
        in_flight: int = IN_FLIGHT,
        per_webhook: int = PER_WEBHOOK,
        attempt_seconds: float = ATTEMPT_SECONDS,
        busy: Callable[[], bool] | None = None,
    ) -> None:
        self._pool = pool
        self._busy = busy or (lambda: False)
        self._worker_id = worker_id
        self._http = HttpSender(allow_private=allow_private)
        self._in_flight = in_flight
        self._per_webhook = per_webhook
        self._attempt_seconds = attempt_seconds
        self._attempts: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._per_webhook_now: Counter[uuid.UUID] = Counter()  # attempts in flight
        self._wakeup = asyncio.Event()
        self._rang = False  # the doorbell rang since the last claim (else a slot freed)
        self._pending_results: list[Result] = []
        self._writing = asyncio.Lock()
        self.sent = 0

    def wake(self) -> None:
        """A doorbell: deliveries may be due."""
        self._rang = True
        self._wakeup.set()

    async def run_forever(self) -> None:
        failures = 0
        try:
            while True:
                self._wakeup.clear()
                free = self._in_flight - len(self._attempts)
                try:
                    claimed = await self.run_once() if free > 0 else 0
                except psycopg.Error as exc:
                    if failures == 0:
                        log.warning("claiming webhook deliveries failed (%s); retrying", exc)
                    delay = WRITE_RETRY_DELAYS[min(failures, len(WRITE_RETRY_DELAYS) - 1)]
                    failures += 1
                    await asyncio.sleep(delay)
                    continue
                failures = 0
                if claimed == 0 and free > 0 and self._busy():  # the worker's jobs first
                    await asyncio.sleep(DEFER_POLL_SECONDS)
                    continue
                if claimed < free or free <= 0:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
                    # cancellation that lands as the wait ends, and the worker never stops.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(POLL_SECONDS):
                            await self._wakeup.wait()
                if self._attempts and not self._rang:  # slots freed: let more gather
                    await asyncio.sleep(GATHER_SECONDS)
                self._rang = False
        finally:
            await self.close()

    async def run_once(self) -> int:
        """Claim what is due (up to the free slots) and start sending it; how many."""
        free = self._in_flight - len(self._attempts)
        if free <= 0:
            return 0
        busy = {hook: n for hook, n in self._per_webhook_now.items() if n > 0}
        params = {
            "worker_id": self._worker_id,
            "limit": free,
            "per_webhook": self._per_webhook,
            "busy_webhooks": list(busy),
            "busy_counts": list(busy.values()),
            "lease_seconds": LEASE_SECONDS,
            "defer_seconds": DEFER_SECONDS if self._busy() else 0,
        }
        async with self._pool.connection() as conn:
            rows = await store.rows(conn, "claim_webhook_deliveries", params)
        for row in rows:
            delivery = Delivery.from_row(row)
            task = asyncio.create_task(self._attempt(delivery), name=f"delivery-{delivery.id}")
            self._attempts[delivery.id] = task
            self._per_webhook_now[delivery.webhook_id] += 1
        return len(rows)

    async def close(self) -> None:
        """Stop: attempts about to end get CLOSE_GRACE_SECONDS (an answer in hand is written,
        not sent again); the rest are stopped and handed back, due at once, the attempt
        refunded (a worker shutting down must not cost a receiver an attempt)."""
        if self._attempts:
            await asyncio.wait(set(self._attempts.values()), timeout=CLOSE_GRACE_SECONDS)
        stopped = {d_id: task for d_id, task in self._attempts.items() if not task.done()}
        for task in stopped.values():
            task.cancel()
        await asyncio.gather(*stopped.values(), return_exceptions=True)
        if stopped:
            with contextlib.suppress(psycopg.Error, TimeoutError):
                async with asyncio.timeout(2), self._pool.connection() as conn:
                    params = {"worker_id": self._worker_id, "ids": list(stopped)}
                    await store.rows(conn, "release_webhook_deliveries", params)
        await self._http.close()

    # -- one attempt -----------------------------------------------------------------------

    async def _attempt(self, delivery: Delivery) -> None:
        try:
            answer, error = await self._send(delivery)
            result = result_of(delivery, answer, error, datetime.now(UTC))
            _log_result(delivery, result)
            await self._write(result)
        except Exception:  # a bug in skiplock: the lease brings the delivery back
            log.exception("webhook attempt crashed %s", fields(delivery_id=delivery.id))
        finally:
            self._attempts.pop(delivery.id, None)
            self._per_webhook_now[delivery.webhook_id] -= 1
            if self._per_webhook_now[delivery.webhook_id] <= 0:
                del self._per_webhook_now[delivery.webhook_id]
            self._wakeup.set()  # a slot is free

    async def _send(self, delivery: Delivery) -> tuple[Answer | None, str | None]:
        body = delivery.body()
        timestamp = int(time.time())
        try:
            target = webhooks.parse_url(delivery.url)  # a row written in psql is checked too
            key = webhooks.secret_key(delivery.secret)
            headers = webhooks.signed_headers(key, str(delivery.id), timestamp, body)
            async with asyncio.timeout(self._attempt_seconds):
                return await self._http.post(target, headers, body), None
        except TimeoutError:
            return None, f"no answer within {self._attempt_seconds:g} s"
        except (DeliveryFailed, ValueError) as exc:
            return None, str(exc)

    # -- outcomes, in batches --------------------------------------------------------------

    async def _write(self, result: Result) -> None:
        """Write the outcome with whatever else is waiting: one statement per batch."""
        self._pending_results.append(result)
        async with self._writing:
            if not self._pending_results:
                return  # written by the batch before
            await asyncio.sleep(GATHER_SECONDS)  # outcomes ending about now share the write
            batch, self._pending_results = self._pending_results, []
            await self._write_batch(batch)

    async def _write_batch(self, batch: list[Result]) -> None:
        params = {
            "worker_id": self._worker_id,
            "ids": [r.delivery_id for r in batch],
            "attempts": [r.attempt for r in batch],
            "statuses": [r.status for r in batch],
            "next_attempt_ats": [r.next_attempt_at for r in batch],
            "status_codes": [r.status_code for r in batch],
            "errors": [r.error for r in batch],
            "finished_ats": [r.finished_at for r in batch],
        }
        give_up = time.monotonic() + LEASE_SECONDS  # after that another worker has it anyway
        failures = 0
        while True:
            try:
                async with self._pool.connection() as conn:
                    await store.rows(conn, "finish_webhook_deliveries", params)
                self.sent += len(batch)
                return
            except psycopg.Error as exc:
                if time.monotonic() > give_up:
                    log.warning("webhook outcomes not written (%s); they will be retried", exc)
                    return
                await asyncio.sleep(WRITE_RETRY_DELAYS[min(failures, 5)])
                failures += 1


def _log_result(delivery: Delivery, result: Result) -> None:
    if result.status == "delivered":
        level, what = logging.DEBUG, "webhook delivered"
    elif result.status == "pending":
        level, what = logging.INFO, "webhook attempt failed"
    else:
        level, what = logging.WARNING, "webhook delivery failed"
    if log.isEnabledFor(level):
        log.log(
            level,
            "%s %s",
            what,
            fields(
                delivery_id=delivery.id,
                webhook_id=delivery.webhook_id,
                job_id=delivery.event.job_id,
                event=delivery.event.type,
                attempt=delivery.attempt,
                status_code=result.status_code,
                error=result.error,
                retry_at=result.next_attempt_at.isoformat() if result.next_attempt_at else None,
            ),
        )
