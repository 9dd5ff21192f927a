"""Schedules: when a periodic job is due (SPEC §7). Pure decisions; every one takes `now`.

A schedule is `cron` (5 fields, read in an IANA time zone) or `intervalSeconds`. Cron
expressions are parsed and walked by `cronsim` (the parser of Healthchecks.io: small, no
dependencies, tested against Debian cron's handling of daylight saving time: a job set for
02:30 on the night clocks skip 02:00-03:00 runs at 03:00, and one in the hour that repeats
runs once). Zones come from `zoneinfo` (the system's database, or the `tzdata` package).

Ticks missed while no worker ran are not replayed: `plan_tick` returns the latest tick at or
before now, and the first tick after now as the next run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError

MAX_INTERVAL_SECONDS = 31_536_000  # a year
MAX_CRON_LENGTH = 200
MAX_TIMEZONE_LENGTH = 64
DEFAULT_TIMEZONE = "UTC"


class InvalidSchedule(ValueError):
    """A cron expression, time zone or interval that cannot be used; the message says why."""


@dataclass(frozen=True)
class Rule:
    """When a schedule's ticks fall: `cron` in `timezone`, or every `interval_seconds`."""

    cron: str | None = None
    interval_seconds: int | None = None
    timezone: str = DEFAULT_TIMEZONE

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.interval_seconds is None):
            raise InvalidSchedule("give exactly one of cron and intervalSeconds")
        if self.interval_seconds is not None and not (
            1 <= self.interval_seconds <= MAX_INTERVAL_SECONDS
        ):
            raise InvalidSchedule(
                f"intervalSeconds must be a whole number from 1 to {MAX_INTERVAL_SECONDS}"
            )
        zone(self.timezone)
        if self.cron is not None:
            check_cron(self.cron, self.timezone)

    def first_run(self, now: datetime) -> datetime:
        """The first tick of a schedule made at `now`."""
        if self.interval_seconds is not None:
            return now + timedelta(seconds=self.interval_seconds)
        return self._cron_after(now)

    def plan_tick(self, due: datetime, now: datetime) -> tuple[datetime, datetime]:
        """(the tick to enqueue, the next run) for a schedule whose next run `due` has
        passed: the latest tick at or before now (missed ones collapse into it), and the
        first tick after now."""
        if self.interval_seconds is not None:
            step = timedelta(seconds=self.interval_seconds)
            missed = max(math.floor((now - due) / step), 0)
            tick = due + missed * step
            return tick, tick + step
        return max(due, self._cron_at_or_before(now, due)), self._cron_after(now)

    def _expression(self) -> str:
        if self.cron is None:
            raise TypeError("an interval schedule has no cron expression")
        return self.cron

    def _cron_after(self, instant: datetime) -> datetime:
        """The first cron tick strictly after `instant`, in UTC."""
        local = instant.astimezone(zone(self.timezone))
        return next(CronSim(self._expression(), local)).astimezone(UTC)

    def _cron_at_or_before(self, instant: datetime, floor: datetime) -> datetime:
        """The latest cron tick at or before `instant` (never before `floor`), in UTC."""
        # cronsim's reverse walk starts one second back; ticks fall on whole minutes.
        start = instant.astimezone(zone(self.timezone)).replace(microsecond=0)
        try:
            tick = next(CronSim(self._expression(), start + timedelta(seconds=1), reverse=True))
        except StopIteration:
            return floor
        tick = tick.astimezone(UTC)
        return tick if floor <= tick <= instant else floor


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The IANA time zone of that name, or InvalidSchedule."""
    if not isinstance(name, str) or not 0 < len(name) <= MAX_TIMEZONE_LENGTH or "\x00" in name:
        raise InvalidSchedule(
            f"timezone must be an IANA time zone name (e.g. Europe/Berlin) of at most "
            f"{MAX_TIMEZONE_LENGTH} characters"
        )
    try:
        if name not in _zone_names():  # IANA names only: not 'localtime', not a file path
            raise ZoneInfoNotFoundError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidSchedule(
            f"unknown timezone {name!r}; use an IANA name such as UTC or America/New_York"
        ) from None


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    # 'localtime' is this machine's zone under another name, not an IANA one.
    return frozenset(available_timezones()) - {"localtime"}


def check_cron(expression: str, timezone: str = DEFAULT_TIMEZONE) -> None:
    """InvalidSchedule unless `expression` is 5 cron fields that match some time."""
    if not isinstance(expression, str) or len(expression) > MAX_CRON_LENGTH:
        raise InvalidSchedule(f"cron must be a string of at most {MAX_CRON_LENGTH} characters")
    fields = expression.split()
    if len(fields) != 5 or any(field.startswith("@") for field in fields):
        raise InvalidSchedule(
            "cron must have 5 fields: minute hour day-of-month month day-of-week "
            f"(e.g. '*/15 * * * *'); got {expression!r}"
        )
    try:
        next(CronSim(expression, datetime.now(zone(timezone))))
    except CronSimError as exc:
        raise InvalidSchedule(f"cron {expression!r} is not valid: {exc}") from None
    except StopIteration:
        raise InvalidSchedule(f"cron {expression!r} never matches a date") from None
