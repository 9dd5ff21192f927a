"""Handlers the worker tests run, in-process or in real `skiplock worker --handlers job_handlers`.

Each run appends a line "<job id> <attempt> <pid>" to $SKIPLOCK_TEST_RUNS (one small
O_APPEND write, atomic across processes), so a test can count how often each job ran and
where.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from skiplock import Output, PermanentError, register
from skiplock.worker.context import JobContext


def record_run(ctx: JobContext) -> None:
    runs = os.environ.get("SKIPLOCK_TEST_RUNS")
    if runs:
        line = f"{ctx.job_id} {ctx.attempt} {os.getpid()}\n".encode()
        fd = os.open(runs, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def read_runs(path: Path) -> list[tuple[str, int, int]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        job_id, attempt, pid = line.split()
        rows.append((job_id, int(attempt), int(pid)))
    return rows


@register("noop")
async def noop(ctx: JobContext, params: dict[str, Any]) -> None:
    record_run(ctx)


@register("echo")
async def echo(ctx: JobContext, params: dict[str, Any]) -> Output:
    """The input's text as a file, with progress on the way."""
    record_run(ctx)
    await ctx.progress(0.5, "half way")
    text = str(params.get("text", ""))
    return Output(filename="echo.txt", content_type="text/plain", data=text.encode())


@register("sleep")
async def sleep(ctx: JobContext, params: dict[str, Any]) -> Output:
    """Sleeps params.seconds, reporting progress every params.tick seconds."""
    record_run(ctx)
    seconds = float(params.get("seconds", 1))
    tick = float(params.get("tick", 0.1))
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        await ctx.progress(min(elapsed / seconds, 1.0), f"{elapsed:.1f} s")
        await asyncio.sleep(min(tick, seconds - elapsed))
    return Output(filename="slept.txt", content_type="text/plain", data=b"slept")


@register("block")
def block(ctx: JobContext, params: dict[str, Any]) -> Output:
    """A `def` handler that blocks its thread for params.seconds."""
    record_run(ctx)
    ctx.progress(0.5)
    time.sleep(float(params.get("seconds", 1)))
    return Output(filename="blocked.txt", content_type="text/plain", data=b"blocked")


@register("flaky")
async def flaky(ctx: JobContext, params: dict[str, Any]) -> Output:
    """Fails until attempt params.succeed_on."""
    record_run(ctx)
    if ctx.attempt < int(params.get("succeed_on", 3)):
        raise RuntimeError(f"flaky failure on attempt {ctx.attempt}")
    return Output(filename="ok.txt", content_type="text/plain", data=b"ok")


@register("doomed")
async def doomed(ctx: JobContext, params: dict[str, Any]) -> None:
    record_run(ctx)
    raise PermanentError("this input can never work")


@register("child")
async def child(ctx: JobContext, params: dict[str, Any]) -> None:
    """Starts `sleep` as a child (its pid in params.pid_file) and waits for it."""
    record_run(ctx)
    process_file = Path(str(params["pid_file"]))

    async def run_and_report() -> None:
        await ctx.run("sh", "-c", f"echo $$ > {process_file}; exec sleep 600")

    await run_and_report()


@register("big_file")
async def big_file(ctx: JobContext, params: dict[str, Any]) -> Output:
    """Writes params.mib MiB to a file in the workdir and returns it by path."""
    record_run(ctx)
    path = ctx.workdir / "big.bin"
    block_ = os.urandom(1 << 20)
    with path.open("wb") as out:
        for _ in range(int(params.get("mib", 1))):
            out.write(block_)
    return Output(filename="big.bin", content_type="application/octet-stream", path=path)


# -- poison (issue 13): texts Postgres cannot store, and a background task that dies ------


@register("nul_stderr")
async def nul_stderr(ctx: JobContext, params: dict[str, Any]) -> None:
    """A child that writes a NUL to stderr, then fails: the error message carries it."""
    record_run(ctx)
    await ctx.run("sh", "-c", "printf 'bad\\000byte\\n' >&2; exit 3")


@register("nul_progress")
async def nul_progress(ctx: JobContext, params: dict[str, Any]) -> None:
    record_run(ctx)
    await ctx.progress(0.5, "half\x00way")


@register("surrogate_name")
async def surrogate_name(ctx: JobContext, params: dict[str, Any]) -> Output:
    """A file name as os.fsdecode makes it from Latin-1 bytes: a lone surrogate."""
    record_run(ctx)
    name = os.fsdecode(b"caf\xe9.txt")
    return Output(filename=name, content_type="text/plain\x00", data=b"coffee")


@register("sabotage")
async def sabotage(ctx: JobContext, params: dict[str, Any]) -> None:
    """Breaks this worker's progress writer, standing in for a bug in a background task."""
    import gc

    from skiplock.worker.progress import ProgressWriter

    async def broken(*args: Any) -> None:
        raise RuntimeError("sabotaged")

    for thing in gc.get_objects():
        if isinstance(thing, ProgressWriter):
            thing._write = broken  # type: ignore[method-assign]
    await ctx.progress(0.5)
    await asyncio.sleep(30)  # the flush writes it (and dies) within 0.2 s


# -- children of ctx.run (issue 13): limits, environment, cleanup -------------------------


@register("command")
async def command(ctx: JobContext, params: dict[str, Any]) -> Output | None:
    """Runs params.argv with ctx.run; its stdout is the output when params.output is true."""
    record_run(ctx)
    result = await ctx.run(*[str(arg) for arg in params["argv"]])
    if not params.get("output"):
        return None
    return Output(filename="stdout.txt", content_type="text/plain", data=result.stdout)


@register("late_child", timeout=1)
def late_child(ctx: JobContext, params: dict[str, Any]) -> None:
    """A `def` handler that outlives its timeout, then tries to make a workdir and start a
    child; what happened is written to params.report."""
    record_run(ctx)
    time.sleep(3)  # the attempt times out after 1 s
    said = []
    try:
        said.append(f"workdir: made {ctx.workdir}")
    except Exception as exc:
        said.append(f"workdir: {type(exc).__name__}")
    try:
        pid_file = params["pid_file"]
        ctx.run_sync("sh", "-c", f"sleep 600 >/dev/null 2>&1 & echo $! > {pid_file}", cwd=Path("/"))
        said.append("run: started a child")
    except Exception as exc:
        said.append(f"run: {type(exc).__name__}")
    Path(params["report"]).write_text("\n".join(said))


@register("stubborn")
async def stubborn(ctx: JobContext, params: dict[str, Any]) -> None:
    """Ignores being cut short: catches the cancellation and sleeps on."""
    record_run(ctx)
    try:
        await asyncio.sleep(600)
    except asyncio.CancelledError:
        await asyncio.sleep(float(params.get("after_cancel", 600)))
