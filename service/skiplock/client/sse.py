"""Server-sent events: parsing frames, and following a stream across reconnects, with no I/O.

The API replays every event after `Last-Event-ID` before going live, with no gap and no
duplicate (SPEC §4), so a follower that remembers the id of the last event it handed out
and reconnects with it loses nothing and repeats nothing. What is left to decide here:
which frames to hand out, when the stream is over, and how long to wait before trying
again. The clients' loops only move bytes.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Any

from skiplock.client.errors import WaitTimeout
from skiplock.errors import SkiplockError

TERMINAL_STATUSES = frozenset({"done", "failed", "canceled"})
TERMINAL_TYPES = frozenset(f"content_job.{status}" for status in TERMINAL_STATUSES)
# The API sends a comment at least every 15 s; a connection silent for longer is dead.
STREAM_READ_SECONDS = 45.0
FIRST_RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class Event:
    """One SSE frame: `id` (None for `status` and `reset`), `type` (the `event:` field:
    `content_job.*`, `status` or `reset`) and `data`, the parsed JSON."""

    id: str | None
    type: str
    data: Any

    @property
    def job_id(self) -> str | None:
        """The job the event is about (`status` carries the whole job: its `id`)."""
        if not isinstance(self.data, dict):
            return None
        found = self.data.get("jobId") or self.data.get("id")
        return str(found) if found is not None else None

    @property
    def status(self) -> str | None:
        return self.data.get("status") if isinstance(self.data, dict) else None

    @property
    def is_terminal(self) -> bool:
        """A `content_job.done`, `.failed` or `.canceled` event. By type, not by `status`:
        the last progress event, written with the completion, already says `done`."""
        return self.type in TERMINAL_TYPES


class SseParser:
    """Lines in, events out (the text/event-stream format, as the API writes it)."""

    def __init__(self) -> None:
        self._type = "message"
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> Event | None:
        """The event a blank line completes; None for any other line."""
        if line == "":
            return self._dispatch()
        if line.startswith(":"):  # a comment: the API's keep-alive
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value or None
        return None

    def _dispatch(self) -> Event | None:
        event_type, data, event_id = self._type, self._data, self._id
        self._type, self._data, self._id = "message", [], None
        if not data:  # a frame without data is no event (the SSE rules)
            return None
        text = "\n".join(data)
        try:
            parsed: Any = json.loads(text)
        except ValueError:
            parsed = text
        return Event(event_id, event_type, parsed)


class Backoff:
    """Waits between reconnects: 0.1 s doubling to 5 s, with jitter so that clients dropped
    together do not all come back in the same instant; reset by a connection that works."""

    def __init__(self) -> None:
        self.failures = 0

    def reset(self) -> None:
        self.failures = 0

    def next_delay(self) -> float:
        delay = min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2.0**self.failures)
        self.failures += 1
        jitter: float = random.uniform(0.5, 1.0)  # noqa: S311  (jitter, not a secret)
        return delay * jitter


class EventFollower:
    """The state of one events() iteration across connections.

    Each connection is: call `headers()`/`read_timeout()` to open it, `opened()` once it
    answers 200, `feed()` each line, then `ended()` on a clean end or `dropped()` on an
    error, and `delay()` before the next. `finished` says the iteration is over.
    """

    def __init__(
        self,
        path: str,
        *,
        job_stream: bool,
        last_event_id: str | None = None,
        reconnect_for: float | None = None,
        deadline: float | None = None,
        timeout_message: str = "timed out waiting for events",
    ) -> None:
        self.path = path
        self.job_stream = job_stream
        self.last_event_id = last_event_id
        self.finished = False
        self.connections = 0
        self._reconnect_for = reconnect_for
        self._deadline = deadline  # time.monotonic() by which wait() gives up
        self._timeout_message = timeout_message
        self._backoff = Backoff()
        self._parser = SseParser()
        self._down_since: float | None = None
        self._held_status: Event | None = None
        self._snapshot_terminal = False

    # -- opening ---------------------------------------------------------------------------

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        return headers

    def read_timeout(self) -> float:
        left = self._time_left()
        return STREAM_READ_SECONDS if left is None else max(0.01, min(STREAM_READ_SECONDS, left))

    def opened(self) -> None:
        self.connections += 1
        self._backoff.reset()
        self._down_since = None
        self._parser = SseParser()  # a frame cut off by the last drop is discarded
        self._held_status = None
        self._snapshot_terminal = False

    # -- reading ---------------------------------------------------------------------------

    def feed(self, line: str) -> list[Event]:
        """The events to hand out for this line (none, one, or two after a reset)."""
        self._check_deadline()
        event = self._parser.feed(line)
        if event is None:
            return []
        if event.type == "status":
            return self._on_status(event)
        if event.type == "reset":
            # The id we resumed from is gone (pruned): events may have been missed. The
            # caller sees the reset; on a job stream, also the job as it is now.
            held, self._held_status = self._held_status, None
            return [event] if held is None else [event, held]
        self._held_status = None
        if event.id is not None:
            self.last_event_id = event.id
        if self.job_stream and event.is_terminal:
            self.finished = True
        return [event]

    def _on_status(self, event: Event) -> list[Event]:
        """`status` (the job as it is, sent first on every connection of a job stream) is
        handed out on the first connection only: after a reconnect the replayed events
        already say what changed, unless a reset follows (then it is handed out too)."""
        self._snapshot_terminal = event.status in TERMINAL_STATUSES
        if self.connections <= 1:
            return [event]
        self._held_status = event
        return []

    # -- ending ----------------------------------------------------------------------------

    def ended(self) -> None:
        """The server closed the stream cleanly (shutdown, a slow client dropped, or a
        finished job with nothing more to send)."""
        if self.job_stream and self._snapshot_terminal:
            self.finished = True

    def dropped(self, error: SkiplockError) -> None:
        """The connection failed or broke; raises when trying again is pointless."""
        self._check_deadline()
        now = time.monotonic()
        if self.connections == 0:
            raise error  # never connected: a wrong URL or a down API, say so now
        self._down_since = self._down_since or now
        if self._reconnect_for is not None and now - self._down_since > self._reconnect_for:
            raise error

    def delay(self) -> float:
        """Seconds to wait before reconnecting (never past wait()'s deadline)."""
        delay = self._backoff.next_delay()
        left = self._time_left()
        return delay if left is None else max(0.0, min(delay, left))

    def _time_left(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    def _check_deadline(self) -> None:
        left = self._time_left()
        if left is not None and left <= 0:
            raise WaitTimeout(self._timeout_message)
