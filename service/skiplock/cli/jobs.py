"""`skiplock jobs list|show|cancel|retry|pause|resume`: jobs straight in DATABASE_URL, for
operators (cancel and retry by filter, pause and resume: cli/operations.py).

No API and no key: whoever holds DATABASE_URL sees every company. Cancel and retry run the
API's own statements (cancel_job.sql, retry_job.sql), so they fire the same events and a
running handler stops the same way; only finding the job by its id alone is the
operators' own query.
"""

from __future__ import annotations

import argparse
import json
import uuid
from typing import Any

from psycopg import AsyncConnection

from skiplock import bulk, store
from skiplock.api.jobs import STATUSES, job_json
from skiplock.cli import operations
from skiplock.cli.support import company_arg, limit_arg, uuid_arg, with_connection
from skiplock.errors import NotFound, SkiplockError
from skiplock.settings import Settings

DEFAULT_LIMIT = 50


class JobStateError(SkiplockError):
    """The job is not in a state that allows the change asked for."""


def add_jobs_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    jobs = commands.add_parser(
        "jobs", help="list, show, cancel, retry, pause or resume jobs in DATABASE_URL"
    )
    actions = jobs.add_subparsers(metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the newest jobs, of every company or one")
    listing.add_argument("--company", metavar="ID", help="only this company's jobs")
    listing.add_argument("--status", choices=STATUSES, help="only jobs in this status")
    listing.add_argument("--type", dest="job_type", metavar="T", help="only this job type")
    listing.add_argument(
        "--limit",
        type=limit_arg(),
        default=DEFAULT_LIMIT,
        help=f"at most N (default {DEFAULT_LIMIT})",
    )
    listing.set_defaults(run=run_list)
    show = actions.add_parser("show", help="print a job")
    show.add_argument("job_id", metavar="JOB_ID")
    show.set_defaults(run=run_show)
    for name, run, statuses, what in (
        ("cancel", run_cancel, bulk.CANCELABLE, "cancel queued or running jobs (handlers stop)"),
        ("retry", run_retry, bulk.RETRYABLE, "queue failed or canceled jobs again"),
    ):
        action = actions.add_parser(
            name, help=f"{what}: one by JOB_ID, or every one a filter matches"
        )
        action.add_argument("job_id", metavar="JOB_ID", nargs="?")
        operations.add_filter_flags(action, statuses)
        action.set_defaults(run=run)
    operations.add_pause_commands(actions)


def run_list(settings: Settings, args: argparse.Namespace) -> int:
    params = {
        "company_id": company_arg(args.company),
        "status": args.status,
        "job_type": args.job_type,
        "limit": args.limit,
    }
    rows = with_connection(settings, lambda conn: store.list_any_jobs(conn, params))
    for row in rows:  # JSON Lines: one job per line, newest first
        print(json.dumps(job_json(row)))
    return 0


def run_show(settings: Settings, args: argparse.Namespace) -> int:
    job_id = uuid_arg(args.job_id, "job id")
    _print_job(with_connection(settings, lambda conn: _existing_job(conn, job_id)))
    return 0


def run_cancel(settings: Settings, args: argparse.Namespace) -> int:
    if operations.is_bulk(args):
        return operations.run_bulk(settings, args, cancel=True)
    job_id = uuid_arg(args.job_id, "job id")
    _print_job(with_connection(settings, lambda conn: _cancel(conn, job_id)))
    return 0


def run_retry(settings: Settings, args: argparse.Namespace) -> int:
    if operations.is_bulk(args):
        return operations.run_bulk(settings, args, cancel=False)
    job_id = uuid_arg(args.job_id, "job id")
    _print_job(with_connection(settings, lambda conn: _retry(conn, job_id)))
    return 0


async def _cancel(conn: AsyncConnection[Any], job_id: uuid.UUID) -> store.Row:
    """Canceled now, or already (unchanged, as the API answers); else JobStateError."""
    job = await _existing_job(conn, job_id)
    row = await store.cancel_job(conn, job["company_id"], job_id)
    if row is not None:
        return row
    job = await _existing_job(conn, job_id)
    if job["status"] != "canceled":
        raise JobStateError(
            f"skiplock: job {job_id} is already {job['status']}; "
            "only queued or running jobs can be canceled"
        )
    return job


async def _retry(conn: AsyncConnection[Any], job_id: uuid.UUID) -> store.Row:
    job = await _existing_job(conn, job_id)
    row = await store.retry_job(conn, job["company_id"], job_id)
    if row is None:
        status = (await _existing_job(conn, job_id))["status"]
        raise JobStateError(
            f"skiplock: job {job_id} is {status}; only failed or canceled jobs can be retried"
        )
    return row


async def _existing_job(conn: AsyncConnection[Any], job_id: uuid.UUID) -> store.Row:
    row = await store.find_any_job(conn, job_id)
    if row is None:
        raise NotFound(f"skiplock: no job with id {job_id}")
    return row


def _print_job(row: store.Row) -> None:
    print(json.dumps(job_json(row)))
