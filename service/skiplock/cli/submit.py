"""`skiplock submit TYPE --input JSON|@file [--wait] [--out FILE]`: a job through the HTTP
API, with skiplock.client, as any client would submit it.

Configured by SKIPLOCK_URL (default http://127.0.0.1:8000, where `serve` and `dev` listen),
SKIPLOCK_API_KEY (and optionally SKIPLOCK_COMPANY_ID, else the API names the key's
company), or --url, --api-key and --company-id. Prints the
submit answer as one JSON line; with --wait (or --out) follows the job's event stream with
a progress bar on stderr, prints the final job as a second JSON line and exits 0 when it is
done, 1 when it failed or was canceled. Every mistake is one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiplock.errors import ConfigError, SkiplockError
from skiplock.settings import Settings

if TYPE_CHECKING:  # imported when a command runs: httpx costs every other command 50 ms
    from skiplock import client as api

DEFAULT_URL = "http://127.0.0.1:8000"


class ApiCallFailed(SkiplockError):
    """A client error, as the one line the command prints."""


def add_submit_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    submit = commands.add_parser("submit", help="submit a job through the HTTP API")
    submit.add_argument("job_type", metavar="TYPE", help="a registered job type, e.g. diagram")
    submit.add_argument(
        "--input", default="{}", metavar="JSON|@FILE", help="the job's input (@- reads stdin)"
    )
    submit.add_argument("--source-task-id", metavar="ID", help="your own id for the job")
    submit.add_argument("--wait", action="store_true", help="follow the job until it finishes")
    submit.add_argument("--out", type=Path, metavar="FILE", help="wait, then save the output")
    submit.add_argument("--url", help=f"the API (SKIPLOCK_URL, default {DEFAULT_URL})")
    submit.add_argument("--api-key", help="the company's API key (SKIPLOCK_API_KEY)")
    submit.add_argument(
        "--company-id", help="the key's company (SKIPLOCK_COMPANY_ID; default: asked of the API)"
    )
    submit.set_defaults(run=run_submit)


def run_submit(settings: Settings, args: argparse.Namespace) -> int:
    from skiplock import client as api

    job_input = read_input(args.input)
    try:
        with _client(args) as client:
            answer = client.submit(args.job_type, job_input, source_task_id=args.source_task_id)
            print(json.dumps(answer), flush=True)
            if not (args.wait or args.out):
                return 0
            job = _wait_with_progress(client, answer["jobId"])
            print(json.dumps(job), flush=True)
            if job["status"] != "done":
                why = f": {job['errorMessage']}" if job.get("errorMessage") else ""
                print(f"job {job['id']} {job['status']}{why}", file=sys.stderr)
                return 1
            if args.out:
                _save_output(client, job, args.out)
            return 0
    except (api.ApiError, api.ConnectionFailed, api.ChecksumMismatch, api.SaveFailed) as exc:
        raise ApiCallFailed(one_line(exc)) from None


def read_input(text: str) -> dict[str, Any]:
    """--input: JSON text, or @file, or @- for stdin; it must be a JSON object."""
    if text.startswith("@"):
        name = text[1:]
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(
                f"skiplock: cannot read the --input file {name!r} ({reason})"
            ) from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"skiplock: --input is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ConfigError('skiplock: --input must be a JSON object, e.g. \'{"source": "…"}\'')
    return value


def _client(args: argparse.Namespace) -> api.Client:
    from skiplock import client as api

    url = args.url or os.environ.get("SKIPLOCK_URL") or DEFAULT_URL
    api_key = args.api_key or os.environ.get("SKIPLOCK_API_KEY")
    company = args.company_id or os.environ.get("SKIPLOCK_COMPANY_ID")
    if not api_key:
        raise ConfigError(
            "skiplock: SKIPLOCK_API_KEY is not set; set it or pass --api-key "
            "(`skiplock dev` and `skiplock company create` print one)"
        )
    company_id = None  # unset: the client asks GET /whoami
    if company:
        try:
            company_id = uuid.UUID(company)
        except ValueError:
            raise ConfigError(
                f"skiplock: {company!r} is not a company id (expected a UUID)"
            ) from None
    if not url.startswith(("http://", "https://")):
        raise ConfigError(
            f"skiplock: {url!r} is not an http:// or https:// URL; check SKIPLOCK_URL"
        )
    return api.Client(url, api_key, company_id, reconnect_for=60.0)


def _wait_with_progress(client: api.Client, job_id: str) -> dict[str, Any]:
    """The final job, followed by SSE; a progress bar on stderr when it is a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        bar = progress.add_task(f"{job_id[:8]} queued", total=1.0)

        def show(event: api.Event) -> None:
            progress.update(bar, **bar_state(event, job_id))

        return client.wait(job_id, on_event=show)


def bar_state(event: api.Event, job_id: str) -> dict[str, Any]:
    """What the bar shows after an event: the status, and the handler's fraction and
    message while it reports progress."""
    data = event.data if isinstance(event.data, dict) else {}
    status = data.get("status") or event.type
    state: dict[str, Any] = {"description": f"{job_id[:8]} {status}"}
    progress = data.get("progress")
    if isinstance(progress, dict) and isinstance(progress.get("fraction"), int | float):
        state["completed"] = float(progress["fraction"])
        if progress.get("message"):
            state["description"] += f" · {progress['message']}"
    if status == "done":
        state["completed"] = 1.0
    return state


def _save_output(client: api.Client, job: dict[str, Any], out: Path) -> None:
    asset_id = job.get("resultAssetId")
    if not asset_id:
        raise ConfigError(f"skiplock: job {job['id']} is done but produced no file to save")
    client.download(asset_id, out)


def one_line(exc: SkiplockError) -> str:
    """A client error as one line that says what to check."""
    from skiplock import client as api

    if isinstance(exc, api.ConnectionFailed):
        line = f"{exc}; is the API running there? check SKIPLOCK_URL or --url"
    elif isinstance(exc, api.Unauthorized):
        line = f"the API refused the key ({exc.message}); check SKIPLOCK_API_KEY or --api-key"
    elif isinstance(exc, api.Forbidden):
        line = f"{exc.message}; check SKIPLOCK_COMPANY_ID or --company-id"
    elif isinstance(exc, api.ApiError):
        line = f"the API answered {exc.status} {exc.code}: {exc.message}"
    else:
        line = str(exc)
    return "skiplock: " + " ".join(line.split())
