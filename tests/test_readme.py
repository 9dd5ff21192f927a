"""The README stays true: its quick-start runs as written, from a copy of the repository."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_helpers import REPO
from processes import free_port, postgres_processes, start_dev, stop_dev

README = (REPO / "README.md").read_text()


def commands_after(marker: str) -> list[str]:
    """The lines of the ```sh block that follows `<!-- marker -->` in the README."""
    match = re.search(rf"<!-- {marker} -->\s*```sh\n(.*?)```", README, re.S)
    assert match, f"README has no <!-- {marker} --> block"
    return [line for line in match.group(1).splitlines() if line.strip()]


@pytest.fixture
def clean_copy() -> Iterator[Path]:
    """The repository's files (tracked and new, not ignored), as a fresh clone would have."""
    root = Path(tempfile.mkdtemp(prefix="skiplock-readme-"))
    root.chmod(0o755)
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    for part in commands_after("testcommand")[0].split("&&"):
        step = part.strip()
        assert step in ci, f".ci/run does not run the README's {step!r}"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quickstart_runs_as_written_in_a_fresh_venv(clean_copy: Path) -> None:
    install, run = commands_after("quickstart")
    subprocess.run(
        ["bash", "-c", install], cwd=clean_copy, check=True, capture_output=True, timeout=540
    )
    port = free_port()
    dev = start_dev(None, port, command=run.split(), cwd=clean_copy)
    try:
        assert dev.lines["url"] == f"http://127.0.0.1:{port}"
        assert dev.lines["apiKey"].startswith("sk_") and dev.lines["companyId"]
        pgdata = Path(dev.lines["pgdata"])
        assert pgdata == clean_copy / ".skiplock" / "pgdata"
        with urllib.request.urlopen(f"{dev.lines['url']}/healthz", timeout=10) as response:
            assert response.status == 200
        # The dashboard's files are in the wheel (package data), not only in the checkout.
        with urllib.request.urlopen(f"{dev.lines['url']}/ui/app.js", timeout=10) as response:
            assert response.status == 200 and b"EventSource" in response.read()
    finally:
        assert stop_dev(dev) == 0
    assert postgres_processes(pgdata) == []


def python_after(marker: str) -> str:
    """The ```python block that follows `<!-- marker -->` in the README."""
    match = re.search(rf"<!-- {marker} -->\s*```python\n(.*?)```", README, re.S)
    assert match, f"README has no <!-- {marker} --> block"
    return match.group(1)


async def test_the_readme_webhook_receiver_verifies_and_prints_deliveries(
    database_url: str, tmp_path: Path
) -> None:
    """The receiver example runs as written, as its own process, and checks what a real
    worker sends it; a forged delivery gets 400."""
    import asyncio
    import os
    import sys

    import httpx

    from api_harness import running_api
    from processes import free_port
    from skiplock.client import AsyncClient
    from worker_harness import running_worker

    script = tmp_path / "receiver.py"
    script.write_text(python_after("webhook-receiver"))
    port = free_port()
    async with running_api(database_url, tmp_path / "storage", webhook_allow_private=True) as api:
        client = AsyncClient(api.base_url, api.acme.api_key)
        hook = await client.webhooks.create(f"http://127.0.0.1:{port}/")
        env = {**os.environ, "WEBHOOK_SECRET": hook["secret"], "PORT": str(port)}
        receiver = await asyncio.create_subprocess_exec(
            sys.executable, str(script), env=env, stdout=asyncio.subprocess.PIPE
        )
        try:
            async with httpx.AsyncClient() as plain:

                async def up() -> None:
                    await plain.get(f"http://127.0.0.1:{port}/")

                for _ in range(200):
                    try:
                        await up()
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.05)
                forged = await plain.post(
                    f"http://127.0.0.1:{port}/",
                    content=b'{"type": "content_job.done"}',
                    headers={
                        "webhook-id": "msg_1",
                        "webhook-timestamp": "1",
                        "webhook-signature": "v1,Zm9yZ2Vk",
                    },
                )
                assert forged.status_code == 400
            done = await client.submit("echo", {"text": "hi"})
            failed = await client.submit("doomed")
            lines: list[str] = []

            async def read() -> None:
                assert receiver.stdout is not None
                while len(lines) < 2:
                    lines.append((await receiver.stdout.readline()).decode().strip())

            async with running_worker(api.database_url, tmp_path / "storage"):
                await asyncio.wait_for(read(), 30)
        finally:
            receiver.terminate()
            await receiver.wait()
            await client.aclose()
    by_job = {line.split()[1]: line.split(" ", 2) for line in lines}
    assert by_job[done["jobId"]][0] == "content_job.done"
    assert by_job[failed["jobId"]] == [
        "content_job.failed",
        failed["jobId"],
        "this input can never work",
    ]
