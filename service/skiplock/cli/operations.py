"""`skiplock jobs cancel|retry` by filter and `skiplock jobs pause|resume` (SPEC §8).

Straight on DATABASE_URL, for operators: no key, every company. Bulk changes go company by
company in batches of 1,000 (skiplock.bulk, the API's own statements), so they fire the same
events, stop running handlers the same way and never hold one long transaction.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from psycopg import AsyncConnection

from skiplock import bulk, store
from skiplock.api.bulk import MAX_JOB_TYPE
from skiplock.api.jobs import MAX_SOURCE_TASK_ID
from skiplock.cli.support import company_arg, with_connection
from skiplock.errors import ConfigError, NotFound
from skiplock.events import utc_text
from skiplock.settings import Settings

FILTER_FLAGS = "--company, --type, --status, --source-task-id"


def add_filter_flags(action: argparse.ArgumentParser, statuses: tuple[str, ...]) -> None:
    """The bulk filter of `jobs cancel|retry`, beside their JOB_ID (now optional)."""
    action.add_argument("--company", metavar="ID", help="only this company's jobs")
    action.add_argument("--type", dest="job_type", metavar="T", help="only jobs of this type")
    action.add_argument(
        "--status",
        dest="statuses",
        action="append",
        choices=statuses,
        help=f"only jobs in this status (repeatable; default {' and '.join(statuses)})",
    )
    action.add_argument("--source-task-id", metavar="ID", help="only jobs with this sourceTaskId")
    action.add_argument(
        "--dry-run", action="store_true", help="print how many jobs match, change nothing"
    )


def add_pause_commands(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, run, what in (
        ("pause", run_pause, "stop claiming a job type (queued jobs wait, running ones finish)"),
        ("resume", run_resume, "claim a paused job type again (workers wake at once)"),
    ):
        action = actions.add_parser(name, help=what)
        action.add_argument("job_type", metavar="TYPE")
        action.add_argument(
            "--company", metavar="ID", help="only this company's jobs (default: every company)"
        )
        action.set_defaults(run=run)


def is_bulk(args: argparse.Namespace) -> bool:
    """Whether `jobs cancel|retry` was given a filter (bulk) rather than a JOB_ID, or one
    line when it was given both or neither."""
    filtered = any(
        value is not None
        for value in (args.company, args.job_type, args.statuses, args.source_task_id)
    )
    if args.job_id is not None and (filtered or args.dry_run):
        raise ConfigError(f"skiplock: give either a JOB_ID or a filter ({FILTER_FLAGS}), not both")
    if args.job_id is None and not filtered:
        raise ConfigError(
            f"skiplock: name a JOB_ID or at least one filter ({FILTER_FLAGS}); "
            "every job of every company is --status with each status"
        )
    return args.job_id is None


def run_bulk(settings: Settings, args: argparse.Namespace, *, cancel: bool) -> int:
    allowed = bulk.CANCELABLE if cancel else bulk.RETRYABLE
    job_filter = bulk.JobFilter(
        statuses=tuple(dict.fromkeys(args.statuses or allowed)),
        job_type=_text(args.job_type, "--type", MAX_JOB_TYPE),
        source_task_id=_text(args.source_task_id, "--source-task-id", MAX_SOURCE_TASK_ID),
    )
    company_id = company_arg(args.company)

    async def change(conn: AsyncConnection[Any]) -> int:
        total = 0
        for company in await _companies(conn, company_id):
            if args.dry_run:
                total += await bulk.count_matching(conn, company, job_filter)
            elif cancel:
                total += await bulk.cancel_matching(_reusing(conn), company, job_filter)
            else:
                total += await bulk.retry_matching(_reusing(conn), company, job_filter)
        return total

    print(json.dumps({"count": with_connection(settings, change)}))
    return 0


def run_pause(settings: Settings, args: argparse.Namespace) -> int:
    return _pause_or_resume(settings, args, pause=True)


def run_resume(settings: Settings, args: argparse.Namespace) -> int:
    return _pause_or_resume(settings, args, pause=False)


def _pause_or_resume(settings: Settings, args: argparse.Namespace, *, pause: bool) -> int:
    """Pause or resume; print what is paused of that type afterwards."""
    job_type: str = _text(args.job_type, "TYPE", MAX_JOB_TYPE) or ""  # argparse requires it
    company_id = company_arg(args.company)

    async def change(conn: AsyncConnection[Any]) -> list[store.Row]:
        if company_id is not None:
            await _companies(conn, company_id)  # NotFound for an unknown company
        if pause:
            await store.pause_job_type(conn, job_type, company_id)
        else:
            await store.resume_job_type(conn, job_type, company_id)
        return await store.list_paused_job_types(conn, job_type)

    paused = with_connection(settings, change)
    print(json.dumps({"jobType": job_type, "paused": [_pause_json(row) for row in paused]}))
    if not pause and any(row["company_id"] is None for row in paused):
        print(
            f"skiplock: note: {job_type} is still paused for every company; "
            f"`skiplock jobs resume {job_type}` lifts that",
            file=sys.stderr,
        )
    return 0


def _pause_json(row: store.Row) -> dict[str, Any]:
    company = row["company_id"]
    return {
        "companyId": str(company) if company is not None else None,
        "pausedAt": utc_text(row["paused_at"]),
    }


async def _companies(conn: AsyncConnection[Any], company_id: uuid.UUID | None) -> list[uuid.UUID]:
    companies = await store.list_company_ids(conn, company_id)
    if company_id is not None and not companies:
        raise NotFound(f"skiplock: no company with id {company_id}")
    return companies


def _reusing(conn: AsyncConnection[Any]) -> bulk.Connect:
    """The one connection of a CLI command, for every batch."""

    @asynccontextmanager
    async def connect() -> AsyncIterator[AsyncConnection[Any]]:
        yield conn

    return connect


def _text(value: str | None, flag: str, max_length: int) -> str | None:
    if value is None:
        return None
    if not value.strip() or len(value) > max_length:
        raise ConfigError(f"skiplock: {flag} must be 1 to {max_length} characters, not blank")
    return value
