"""`skiplock webhooks …` and `skiplock schedules …`: straight on DATABASE_URL, for operators.

Like `skiplock jobs`: no API and no key, every company. Webhooks are made by tenants through
the API (their secret is shown to them once); operators look at them, at what their
deliveries are doing, send failed deliveries again after a receiver's outage, and delete a
webhook or a schedule that misbehaves. Output is JSON Lines (one object per line); a
secret is never printed.
"""

from __future__ import annotations

import argparse
import json
import uuid
from typing import Any

from psycopg import AsyncConnection

from skiplock import store
from skiplock.api.schedules import schedule_json
from skiplock.api.webhooks import DELIVERY_STATUSES, delivery_json, webhook_json
from skiplock.cli.support import company_arg, limit_arg, uuid_arg, with_connection
from skiplock.errors import NotFound
from skiplock.events import utc_text
from skiplock.settings import Settings

DEFAULT_LIMIT = 50
MAX_LIMIT = 10_000


def add_webhook_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    hooks = commands.add_parser("webhooks", help="webhooks and their deliveries in DATABASE_URL")
    actions = hooks.add_subparsers(metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="webhooks with counts of their deliveries")
    listing.add_argument("--company", metavar="ID", help="only this company's webhooks")
    listing.set_defaults(run=run_list_webhooks)
    sent = actions.add_parser("deliveries", help="a webhook's newest deliveries")
    sent.add_argument("webhook_id", metavar="WEBHOOK_ID")
    sent.add_argument("--status", choices=DELIVERY_STATUSES, help="only deliveries in this status")
    sent.add_argument(
        "--limit",
        type=limit_arg(MAX_LIMIT),
        default=DEFAULT_LIMIT,
        help=f"at most N (default {DEFAULT_LIMIT})",
    )
    sent.set_defaults(run=run_deliveries)
    retry = actions.add_parser(
        "retry", help="send a webhook's failed deliveries again (attempts reset)"
    )
    retry.add_argument("webhook_id", metavar="WEBHOOK_ID")
    retry.set_defaults(run=run_retry_deliveries)
    delete = actions.add_parser("delete", help="delete a webhook and its pending deliveries")
    delete.add_argument("webhook_id", metavar="WEBHOOK_ID")
    delete.set_defaults(run=run_delete_webhook)

    schedules = commands.add_parser("schedules", help="schedules (periodic jobs) in DATABASE_URL")
    actions = schedules.add_subparsers(metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="schedules, the soonest due first")
    listing.add_argument("--company", metavar="ID", help="only this company's schedules")
    listing.set_defaults(run=run_list_schedules)
    delete = actions.add_parser("delete", help="delete a schedule: it makes no more jobs")
    delete.add_argument("schedule_id", metavar="SCHEDULE_ID")
    delete.set_defaults(run=run_delete_schedule)


def _print_lines(items: list[dict[str, Any]]) -> None:
    for item in items:
        print(json.dumps(item))


# -- webhooks --------------------------------------------------------------------------------


def run_list_webhooks(settings: Settings, args: argparse.Namespace) -> int:
    params = {"company_id": company_arg(args.company)}
    rows = with_connection(settings, lambda conn: store.rows(conn, "list_any_webhooks", params))
    _print_lines(
        [
            {
                **webhook_json(row),
                "companyId": str(row["company_id"]),
                "pending": row["pending"],
                "failed": row["failed"],
                "delivered": row["delivered"],
                "lastError": row["last_error"],
            }
            for row in rows
        ]
    )
    return 0


def run_deliveries(settings: Settings, args: argparse.Namespace) -> int:
    webhook_id = uuid_arg(args.webhook_id, "webhook id")

    async def read(conn: AsyncConnection[Any]) -> list[store.Row]:
        hook = await _existing_webhook(conn, webhook_id)
        params = {
            "company_id": hook["company_id"],
            "webhook_id": webhook_id,
            "status": args.status,
            "limit": args.limit,
        }
        return await store.rows(conn, "list_webhook_deliveries", params)

    rows = with_connection(settings, read)
    _print_lines([delivery_json(row) for row in rows if row["id"] is not None])
    return 0


def run_retry_deliveries(settings: Settings, args: argparse.Namespace) -> int:
    webhook_id = uuid_arg(args.webhook_id, "webhook id")

    async def retry(conn: AsyncConnection[Any]) -> int:
        await _existing_webhook(conn, webhook_id)
        return len(await store.rows(conn, "retry_webhook_deliveries", {"webhook_id": webhook_id}))

    print(json.dumps({"count": with_connection(settings, retry)}))
    return 0


def run_delete_webhook(settings: Settings, args: argparse.Namespace) -> int:
    webhook_id = uuid_arg(args.webhook_id, "webhook id")

    async def delete(conn: AsyncConnection[Any]) -> None:
        hook = await _existing_webhook(conn, webhook_id)
        params = {"company_id": hook["company_id"], "webhook_id": webhook_id}
        await store.rows(conn, "delete_webhook", params)

    with_connection(settings, delete)
    print(json.dumps({"webhookId": str(webhook_id), "deleted": True}))
    return 0


async def _existing_webhook(conn: AsyncConnection[Any], webhook_id: uuid.UUID) -> store.Row:
    rows = await store.rows(conn, "find_any_webhook", {"webhook_id": webhook_id})
    if not rows:
        raise NotFound(f"skiplock: no webhook with id {webhook_id}")
    return rows[0]


# -- schedules -------------------------------------------------------------------------------


def run_list_schedules(settings: Settings, args: argparse.Namespace) -> int:
    params = {"company_id": company_arg(args.company)}
    rows = with_connection(settings, lambda conn: store.rows(conn, "list_any_schedules", params))
    _print_lines(
        [
            {
                **schedule_json(row),
                "companyId": str(row["company_id"]),
                "lastRunAt": utc_text(row["last_run_at"]) if row["last_run_at"] else None,
                "lastJobId": str(row["last_job_id"]) if row["last_job_id"] else None,
            }
            for row in rows
        ]
    )
    return 0


def run_delete_schedule(settings: Settings, args: argparse.Namespace) -> int:
    schedule_id = uuid_arg(args.schedule_id, "schedule id")

    async def delete(conn: AsyncConnection[Any]) -> None:
        rows = await store.rows(conn, "find_any_schedule", {"schedule_id": schedule_id})
        if not rows:
            raise NotFound(f"skiplock: no schedule with id {schedule_id}")
        params = {"company_id": rows[0]["company_id"], "schedule_id": schedule_id}
        await store.rows(conn, "delete_schedule", params)

    with_connection(settings, delete)
    print(json.dumps({"scheduleId": str(schedule_id), "deleted": True}))
    return 0
