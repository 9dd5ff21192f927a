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
