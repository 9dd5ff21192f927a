"""The README's example handler module imports, registers its types, and its `def` handler
runs in a real worker."""

from __future__ import annotations

import re
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg

from cli_helpers import REPO
from skiplock import handlers
from worker_harness import await_for, enqueue, job, running_worker, status_is


def _example_module() -> str:
    readme = (REPO / "README.md").read_text()
    match = re.search(r"```python\n(# myapp/handlers\.py\n.*?)```", readme, re.S)
    assert match, "README lost its example handler module"
    return match.group(1)


async def test_readme_example_handlers_register_and_run(
    conn: psycopg.Connection[Any],
    company_id: uuid.UUID,
    database_url: str,
    tmp_path: Path,
    monkeypatch: Any,
) -> None:
    package = tmp_path / "myapp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "handlers.py").write_text(_example_module())
    monkeypatch.syspath_prepend(str(tmp_path))
    handlers.load_handler_modules(["myapp.handlers"], include_entry_points=False)
    assert {"thumbnail", "checksum"} <= set(handlers.registry.names())
    with_bad_input = enqueue(conn, company_id, "thumbnail", {"width": 0})
    checksum = enqueue(conn, company_id, "checksum")
    async with running_worker(
        database_url, tmp_path / "storage", job_types=("checksum", "thumbnail")
    ):
        await await_for(status_is(conn, checksum, "done"))
        await await_for(status_is(conn, with_bad_input, "failed"))
    asset_key = conn.execute(
        "SELECT object_key FROM skiplock.assets WHERE id = %s",
        (job(conn, checksum)["result_asset_id"],),
    ).fetchone()
    assert asset_key is not None
    assert b"/etc/hostname" in (tmp_path / "storage" / asset_key[0]).read_bytes()
    assert job(conn, with_bad_input)["error_message"].startswith("invalid input: input (root):")
    sys.modules.pop("myapp.handlers", None)
    sys.modules.pop("myapp", None)
