"""Children of ctx.run, in real worker processes (issue 13): resource limits, the pixel
budget of the built-in renderers, Graphviz's file sandbox, a minimal environment, and no
child or workdir outliving its attempt."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from worker_harness import (
    WorkerProcess,
    enqueue,
    job,
    process_exists,
    start_worker_process,
    status_is,
    wait_for,
)

Conn = psycopg.Connection[Any]
BOMB = 'digraph { graph [size="20,20!", ratio=fill, dpi=2000]; a -> b }'  # 64 bytes


@pytest.fixture
def worker_env() -> dict[str, str]:
    return {}


@pytest.fixture
def worker(
    database_url: str, tmp_path: Path, worker_env: dict[str, str]
) -> Iterator[WorkerProcess]:
    process = start_worker_process(database_url, tmp_path, env=worker_env)
    try:
        yield process
    finally:
        process.signal(signal.SIGTERM)
        try:
            assert process.wait() == 0, process.log()[-3000:]
        finally:
            process.kill()


def finished(conn: Conn, job_id: uuid.UUID, timeout: float = 30) -> dict[str, Any]:
    wait_for(status_is(conn, job_id, "done", "failed"), timeout=timeout)
    return job(conn, job_id)


def output(conn: Conn, job_id: uuid.UUID, storage: Path) -> bytes:
    row = conn.execute(
        "SELECT a.object_key FROM skiplock.content_jobs j "
        "JOIN skiplock.assets a ON a.id = j.result_asset_id WHERE j.id = %s",
        (job_id,),
    ).fetchone()
    assert row is not None
    return (storage / row[0]).read_bytes()


def still_works(conn: Conn, company_id: uuid.UUID, worker: WorkerProcess) -> None:
    later = enqueue(conn, company_id, "noop")
    wait_for(status_is(conn, later, "done"), timeout=30)
    assert worker.process.poll() is None


# -- item 3: limits ------------------------------------------------------------------------


def test_a_dot_bomb_fails_at_once_with_the_pixel_budget_in_its_message(
    conn: Conn, company_id: uuid.UUID, worker: WorkerProcess
) -> None:
    """The 64-byte DOT took `dot` to 4.2 GB and 52 s; now it never starts."""
    bomb = enqueue(conn, company_id, "diagram", {"source": BOMB, "format": "png"})
    failed = finished(conn, bomb)
    assert (failed["status"], failed["attempts"]) == ("failed", 1)
    assert failed["error_message"] == (
        "this DOT source asks for a 40222 x 40222 pixel bitmap (1,074 megapixels: "
        "size='20,20!' at dpi 2000), over the limit of 64 megapixels "
        "(SKIPLOCK_RENDER_MAX_PIXELS); lower its size or dpi, or render it as SVG or PDF"
    )
    # As SVG the same source is a small vector drawing: rendered.
    svg = enqueue(conn, company_id, "diagram", {"source": BOMB, "format": "svg"})
    assert finished(conn, svg)["status"] == "done"
    still_works(conn, company_id, worker)


def test_what_the_budget_cannot_read_the_memory_limit_stops(
    conn: Conn, company_id: uuid.UUID, worker: WorkerProcess
) -> None:
    """No size attribute: a 400-inch node makes a 38,400-pixel-wide drawing that only the
    layout knows about. cairo's allocation fails under SKIPLOCK_CHILD_MEMORY_MB."""
    source = "digraph { a [width=400, height=400, fixedsize=true] }"
    huge = enqueue(conn, company_id, "diagram", {"source": source, "format": "png"})
    failed = finished(conn, huge)
    assert (failed["status"], failed["attempts"]) == ("failed", 1)
    message = failed["error_message"]
    assert message.startswith("Graphviz could not render this DOT source: dot was killed by ")
    assert "it may have run out of its 1024 MiB of memory (SKIPLOCK_CHILD_MEMORY_MB)" in message
    assert "out of memory" in message
    still_works(conn, company_id, worker)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_a_video_frame_over_the_pixel_budget_fails_naming_the_frame(
    conn: Conn, company_id: uuid.UUID, worker: WorkerProcess
) -> None:
    """A frame's own dpi wins over the canvas size the video type gives dot."""
    frames = [
        {"source": "digraph { a -> b }", "seconds": 1},
        {"source": "digraph { graph [dpi=2000]; a -> b }", "seconds": 1},
    ]
    video = enqueue(conn, company_id, "video", {"frames": frames, "width": 1280})
    failed = finished(conn, video)
    assert (failed["status"], failed["attempts"]) == ("failed", 1)
    assert failed["error_message"].startswith(
        "frame 2 of 2 (input frames/1/source) asks for a 26889 x 15222 pixel bitmap "
        "(409 megapixels: size='13.3333,7.5000!' at dpi 2000)"
    )


@pytest.mark.parametrize(
    ("worker_env", "argv", "expected"),
    [
        (
            {"SKIPLOCK_CHILD_MEMORY_MB": "200"},
            [sys.executable, "-c", "bytearray(400 << 20)"],
            f"{sys.executable} exited with status 1; it may have run out of its 200 MiB of memory "
            "(SKIPLOCK_CHILD_MEMORY_MB): ",
        ),
        (
            {"SKIPLOCK_CHILD_CPU_SECONDS": "1"},
            [sys.executable, "-c", "while True: pass"],
            f"{sys.executable} was killed by SIGXCPU; it used its 1 s of CPU time "
            "(SKIPLOCK_CHILD_CPU_SECONDS)",
        ),
        (
            {"SKIPLOCK_GENERATED_ASSET_MAX_BYTES": "1048576"},
            ["sh", "-c", "head -c 2097152 /dev/zero > big.bin"],
            "sh exited with status 153; it wrote a file past 1048576 bytes "
            "(the output limit, SKIPLOCK_GENERATED_ASSET_MAX_BYTES)",
        ),
    ],
    ids=["memory", "cpu", "file-size"],
)
def test_a_child_past_its_limit_fails_the_job_not_the_worker(
    conn: Conn,
    company_id: uuid.UUID,
    worker: WorkerProcess,
    argv: list[str],
    expected: str,
) -> None:
    hog = enqueue(conn, company_id, "command", {"argv": argv}, max_attempts=1)
    failed = finished(conn, hog)
    assert failed["status"] == "failed"
    assert (
        failed["error_message"]
        .split(" (attempt")[0]
        .startswith(expected.replace("python3", Path(sys.executable).name))
    ), failed["error_message"]
    still_works(conn, company_id, worker)


# -- item 4: Graphviz's file sandbox, the environment --------------------------------------


def _image_dot(path: str, broken: bool = False) -> str:
    tail = "; b [label=<<b>unclosed>]" if broken else ""
    return f'digraph {{ a [shape=none, label="", image="{path}"]{tail} }}'


def test_dot_cannot_read_files_from_the_workers_disk(
    conn: Conn, company_id: uuid.UUID, worker: WorkerProcess, tmp_path: Path
) -> None:
    """Another tenant's output (here any PNG on the worker's disk) is neither drawn into this
    tenant's PNG nor told apart from a missing file by the error message."""
    secret = tmp_path / "someone-elses.png"
    secret.write_bytes(output_of_dot("digraph { secret [shape=box, style=filled] }"))
    missing = tmp_path / "no-such.png"
    jobs = {
        (path, broken): enqueue(
            conn, company_id, "diagram", {"source": _image_dot(str(path), broken), "format": "png"}
        )
        for path in (secret, missing)
        for broken in (False, True)
    }
    rows = {key: finished(conn, job_id) for key, job_id in jobs.items()}
    storage = tmp_path / "storage"
    drawn = {
        path: hashlib.sha256(output(conn, jobs[(path, False)], storage)).hexdigest()
        for path in (secret, missing)
    }
    assert drawn[secret] == drawn[missing], "the existing image was drawn into the output"
    errors = {path: rows[(path, True)]["error_message"] for path in (secret, missing)}
    assert errors[secret].replace(str(secret), "PATH") == errors[missing].replace(
        str(missing), "PATH"
    ), errors
    assert "Warning" not in errors[secret]


def output_of_dot(source: str) -> bytes:
    import subprocess

    return subprocess.run(
        ["dot", "-Tpng"], input=source.encode(), capture_output=True, check=True
    ).stdout


@pytest.mark.parametrize(
    "worker_env",
    [
        {
            "AWS_SECRET_ACCESS_KEY": "not-for-children",
            "SKIPLOCK_CHILD_ENV": "SKIPLOCK_TEST_PASSED",
            "SKIPLOCK_TEST_PASSED": "yes",
        }
    ],
)
def test_a_child_gets_a_minimal_environment(
    conn: Conn, company_id: uuid.UUID, worker: WorkerProcess, tmp_path: Path
) -> None:
    """Never DATABASE_URL, AWS_* or anything else of the worker's but what it names."""
    printed = enqueue(conn, company_id, "command", {"argv": ["env"], "output": True})
    assert finished(conn, printed)["status"] == "done"
    env = dict(
        line.split("=", 1)
        for line in output(conn, printed, tmp_path / "storage").decode().splitlines()
    )
    assert "DATABASE_URL" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert "SKIPLOCK_STORAGE_DIR" not in env
    assert env["SKIPLOCK_TEST_PASSED"] == "yes"  # named in SKIPLOCK_CHILD_ENV
    assert env["PATH"] == os.environ["PATH"]
    assert env["HOME"] == env["TMPDIR"]
    assert Path(env["HOME"]).name.startswith(f"skiplock-{printed}-")


# -- item 9: nothing outlives its attempt --------------------------------------------------


def test_a_background_child_dies_with_its_job_even_when_it_is_done(
    conn: Conn, company_id: uuid.UUID, worker: WorkerProcess, tmp_path: Path
) -> None:
    pid_file = tmp_path / "background.pid"
    argv = ["sh", "-c", f"sleep 600 >/dev/null 2>&1 & echo $! > {pid_file}"]
    done = enqueue(conn, company_id, "command", {"argv": argv})
    assert finished(conn, done)["status"] == "done"
    pid = int(pid_file.read_text())
    try:
        wait_for(lambda: not process_exists(pid), timeout=10)
    finally:
        if process_exists(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_timed_out_def_handler_cannot_start_a_child_or_make_a_workdir(
    conn: Conn, company_id: uuid.UUID, worker: WorkerProcess, tmp_path: Path
) -> None:
    report, pid_file = tmp_path / "report.txt", tmp_path / "late.pid"
    params = {"report": str(report), "pid_file": str(pid_file)}
    late = enqueue(conn, company_id, "late_child", params, max_attempts=1)
    failed = finished(conn, late)
    assert failed["status"] == "failed" and "timed out after 1 s" in failed["error_message"]
    said = wait_for(lambda: report.exists() and report.read_text(), timeout=20)
    try:
        assert said.splitlines() == ["workdir: AttemptEnded", "run: AttemptEnded"]
    finally:
        if pid_file.exists():  # on failure: do not leave the child behind
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
    leftovers = list(Path(tempfile.gettempdir()).glob(f"skiplock-{late}-*"))
    assert leftovers == []


def test_a_dot_killed_by_a_signal_keeps_its_file_warnings_out_of_the_message(
    conn: Conn, company_id: uuid.UUID, database_url: str, tmp_path: Path
) -> None:
    """Graphviz's `Warning:` lines name files on the worker's disk; a crash (no limit hit)
    is retried and its stderr tail goes into error_message, filtered like any other."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    crashing = bin_dir / "dot"  # stands in for a dot that crashes, as a real one may
    crashing.write_text(
        "#!/bin/sh\ncat >/dev/null\n"
        "echo 'Warning: /srv/other-tenant/secret.png: No such file or directory' >&2\n"
        "echo 'Error: something broke' >&2\nkill -SEGV $$\n"
    )
    crashing.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    process = start_worker_process(database_url, tmp_path, env=env)
    try:
        job_id = enqueue(conn, company_id, "diagram", {"source": "digraph { a }"}, max_attempts=1)
        failed = finished(conn, job_id)
    finally:
        process.signal(signal.SIGTERM)
        process.wait()
        process.kill()
    assert failed["status"] == "failed"
    message = failed["error_message"]
    assert message.startswith("ChildProcessFailed: dot was killed by SIGSEGV; it may have run")
    assert message.endswith(": Error: something broke (attempt 1 of 1, no attempts left)")
    assert "secret.png" not in message
