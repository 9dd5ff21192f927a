"""The `skiplock` command: parse flags, call one function.

Any SkiplockError becomes one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from skiplock import db, keys, store
from skiplock.cli.jobs import add_jobs_commands
from skiplock.cli.submit import add_submit_command
from skiplock.cli.support import check_at_start, uuid_arg, with_connection
from skiplock.cli.webhooks import add_webhook_commands
from skiplock.errors import ConfigError, SkiplockError
from skiplock.limits import raise_open_file_limit
from skiplock.settings import Settings, load_settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help(sys.stderr)
        return 2
    try:
        settings = load_settings()
        result: int = args.run(settings, args)
        return result
    except SkiplockError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skiplock", description="A Postgres-native job queue service."
    )
    commands = parser.add_subparsers(metavar="COMMAND")

    dev = commands.add_parser("dev", help="zero-config: embedded Postgres + API in one process")
    dev.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    dev.add_argument("--host", default="127.0.0.1", help="HTTP address (default 127.0.0.1)")
    dev.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".skiplock"),
        help="cluster and assets live here between runs (default ./.skiplock)",
    )
    dev.set_defaults(run=_run_dev)

    serve = commands.add_parser("serve", help="the HTTP API under uvicorn")
    serve.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--handlers",
        action="append",
        default=[],
        metavar="MODULE",
        help="handler module whose job types the API accepts (adds to SKIPLOCK_HANDLERS)",
    )
    serve.set_defaults(run=_run_serve)

    worker = commands.add_parser("worker", help="run jobs: N handler slots fed by one claimer")
    worker.add_argument(
        "--concurrency", type=_positive_int, default=10, help="handler slots (default 10)"
    )
    worker.add_argument(
        "--types",
        action="append",
        metavar="A,B",
        help="only these job types (comma-separated; default every registered type)",
    )
    worker.add_argument(
        "--handlers",
        action="append",
        default=[],
        metavar="MODULE",
        help="import this handler module (repeatable; adds to SKIPLOCK_HANDLERS)",
    )
    worker.add_argument(
        "--grace",
        type=_non_negative_float,
        default=8.0,
        help="seconds running jobs get to finish on SIGTERM before they are handed back "
        "(default 8, inside Docker's 10 s stop timeout)",
    )
    worker.set_defaults(run=_run_worker)

    migrate = commands.add_parser("migrate", help="apply the SQL migrations to DATABASE_URL")
    migrate.add_argument("--rollback", action="store_true", help="undo the last migration")
    migrate.set_defaults(run=_run_migrate)

    company = commands.add_parser("company", help="manage companies (tenants)")
    company_commands = company.add_subparsers(metavar="ACTION", required=True)
    company_create = company_commands.add_parser("create", help="create a company and its key")
    company_create.add_argument("name")
    company_create.set_defaults(run=_run_company_create)
    company_update = company_commands.add_parser(
        "update", help="set a company's limits (max running jobs, max queued jobs)"
    )
    company_update.add_argument("company_id")
    for flag, what in (
        ("--max-running", "at most N of its jobs run at once, across all workers"),
        ("--max-queued", "a submit past N queued jobs is refused (HTTP 429)"),
    ):
        company_update.add_argument(flag, metavar="N|none", help=f"{what}; none = unlimited")
    company_update.set_defaults(run=_run_company_update)

    key = commands.add_parser("key", help="manage API keys")
    key_commands = key.add_subparsers(metavar="ACTION", required=True)
    key_create = key_commands.add_parser("create", help="create an API key for a company")
    key_create.add_argument("company_id")
    key_create.set_defaults(run=_run_key_create)
    key_revoke = key_commands.add_parser("revoke", help="revoke an API key")
    key_revoke.add_argument("key_id")
    key_revoke.set_defaults(run=_run_key_revoke)

    bench = commands.add_parser(
        "bench", help="benchmark against PgQueuer, procrastinate and chancy (source checkout)"
    )
    bench.add_argument("--quick", action="store_true", help="1 repetition, short windows (< 3 min)")
    bench.add_argument(
        "--no-peers", action="store_true", help="skiplock and the Postgres ceiling only"
    )
    bench.add_argument(
        "--jobs", type=_positive_int, help="jobs per drain and enqueue (default 20000; 2000 quick)"
    )
    bench.add_argument("--repeat", type=_positive_int, help="repetitions (default 3; 1 quick)")
    bench.add_argument("--out", type=Path, help="report to write (default bench/RESULTS.md)")
    bench.add_argument(
        "--only", metavar="CASES", help="a subset of drain,wakeup,enqueue,noisy,http,sse,ceiling"
    )
    bench.set_defaults(run=_run_bench)

    add_submit_command(commands)  # cli_submit.py: a job through the HTTP API
    add_jobs_commands(commands)  # cli_jobs.py: jobs in DATABASE_URL, for operators
    add_webhook_commands(commands)  # cli/webhooks.py: webhooks and schedules, for operators
    return parser


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return number


def _non_negative_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number >= 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds (0 or more)")
    return number


def _print_json(value: dict[str, Any]) -> None:
    print(json.dumps(value))


def _run_migrate(settings: Settings, args: argparse.Namespace) -> int:
    # SKIPLOCK_LISTEN_URL when set: a direct connection (yoyo's lock and DDL need a session).
    report = db.migrate(settings.require_listen_url(), rollback=args.rollback)
    if args.rollback:
        done = ", ".join(report.rolled_back) or "nothing (no migration is applied)"
        print(f"rolled back: {done}")
    elif report.applied:
        print(f"applied {len(report.applied)} migration(s): {', '.join(report.applied)}")
    else:
        print(f"up to date: all {report.total} migration(s) already applied")
    if report.rebased_events:
        print(f"rebased the xid of {report.rebased_events} event(s) restored from another cluster")
    return 0


def _run_company_create(settings: Settings, args: argparse.Namespace) -> int:
    name = args.name.strip()
    if not name:
        raise ConfigError("skiplock: a company name cannot be blank")
    new = with_connection(settings, lambda conn: keys.create_company(conn, name))
    _print_json({"companyId": str(new.company_id), "keyId": str(new.key_id), "apiKey": new.api_key})
    return 0


MAX_LIMIT = 2_147_483_647  # companies.max_running and max_queued are Postgres integers


def _limits(args: argparse.Namespace) -> dict[str, int | None]:
    """The limits given on the command line: a whole number, or none (unlimited)."""
    limits: dict[str, int | None] = {}
    for name, flag, value in (
        ("max_running", "--max-running", args.max_running),
        ("max_queued", "--max-queued", args.max_queued),
    ):
        if value is None:
            continue
        text = value.strip()
        if text.lower() == "none":
            limits[name] = None
        elif text.isascii() and text.isdigit() and int(text) <= MAX_LIMIT:
            limits[name] = int(text)
        else:
            raise ConfigError(
                f"skiplock: {flag} {value!r} is not a whole number of jobs (0 to {MAX_LIMIT}) "
                "or none (unlimited)"
            )
    return limits


def _run_company_update(settings: Settings, args: argparse.Namespace) -> int:
    company_id = uuid_arg(args.company_id, "company id")
    limits = _limits(args)

    async def update(conn: Any) -> store.Row | None:
        return await store.update_company_limits(conn, company_id, limits)

    row = with_connection(settings, update)
    if row is None:
        raise ConfigError(f"skiplock: no company {company_id}; see `skiplock company create`")
    _print_json(
        {
            "companyId": str(row["id"]),
            "name": row["name"],
            "maxRunning": row["max_running"],
            "maxQueued": row["max_queued"],
        }
    )
    return 0


def _run_key_create(settings: Settings, args: argparse.Namespace) -> int:
    company_id = uuid_arg(args.company_id, "company id")
    new = with_connection(settings, lambda conn: keys.create_key(conn, company_id))
    _print_json({"keyId": str(new.key_id), "apiKey": new.api_key})
    return 0


def _run_key_revoke(settings: Settings, args: argparse.Namespace) -> int:
    key_id = uuid_arg(args.key_id, "key id")
    with_connection(settings, lambda conn: keys.revoke_key(conn, key_id))
    _print_json({"keyId": str(key_id), "revoked": True})
    return 0


def _run_serve(settings: Settings, args: argparse.Namespace) -> int:
    from skiplock import handlers, logs
    from skiplock.api.server import run_serve

    raise_open_file_limit()
    logs.configure(settings.log_level)
    handlers.load_handler_modules([*settings.handlers, *args.handlers])
    asyncio.run(check_at_start(settings))
    return run_serve(settings, args.host, args.port)


def _run_worker(settings: Settings, args: argparse.Namespace) -> int:
    from skiplock import handlers, logs
    from skiplock.worker import (
        Worker,
        WorkerOptions,
        run_until_signalled,
        served_types,
        tune_gc,
    )

    raise_open_file_limit()
    logs.configure(settings.log_level)
    handlers.load_handler_modules([*settings.handlers, *args.handlers])
    asyncio.run(check_at_start(settings))
    _warn_missing_renderers()
    options = WorkerOptions(
        concurrency=args.concurrency, job_types=served_types(args.types), grace=args.grace
    )
    tune_gc()

    async def run() -> None:
        await run_until_signalled(Worker(settings, options))

    # asyncio's own loop, not uvloop: uvloop's children inherit the worker's pipe ends, so
    # ctx.run of a command that leaves a background process waited for it (README, "Event
    # loop"; tests/test_children.py).
    asyncio.run(run())
    return 0


def _warn_missing_renderers() -> None:
    from skiplock.builtin import diagram, video

    if not diagram.dot_available():
        print(f"skiplock: warning: {diagram.MISSING_DOT}; diagram jobs will fail", file=sys.stderr)
    missing_for_video = video.missing_programs()
    if missing_for_video is not None:
        print(f"skiplock: warning: {missing_for_video}; video jobs will fail", file=sys.stderr)


def _run_dev(settings: Settings, args: argparse.Namespace) -> int:
    from skiplock.cli.dev import run_dev

    raise_open_file_limit()
    return run_dev(settings, data_dir=args.data_dir, host=args.host, port=args.port)


BENCH_NEEDS_CHECKOUT = (
    "skiplock bench needs a source checkout of skiplock (bench/ not found); run it from a clone"
)


def _run_bench(settings: Settings, args: argparse.Namespace) -> int:
    """Run bench/suite.py of this checkout in a child Python; its exit status is ours."""
    import subprocess

    suite = _bench_suite()
    if suite is None:
        raise ConfigError(BENCH_NEEDS_CHECKOUT)
    passed = ["--quick"] * args.quick + ["--no-peers"] * args.no_peers
    for flag, value in (("--jobs", args.jobs), ("--repeat", args.repeat), ("--only", args.only)):
        passed += [flag, str(value)] if value is not None else []
    if args.out is not None:
        passed += ["--out", str(args.out.resolve())]
    return subprocess.call([sys.executable, str(suite), *passed])  # noqa: S603


def _bench_suite() -> Path | None:
    """bench/suite.py under the current directory, else beside the imported package."""
    import skiplock

    for root in (Path.cwd(), Path(skiplock.__file__).resolve().parents[2]):
        if (root / "bench" / "suite.py").is_file():
            return root / "bench" / "suite.py"
    return None
