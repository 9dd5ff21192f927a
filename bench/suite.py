"""`skiplock bench`: skiplock side by side with PgQueuer, procrastinate and chancy.

    .venv/bin/python bench/suite.py [--quick] [--no-peers] [--jobs N] [--repeat N]
                                    [--out bench/RESULTS.md] [--only drain,wakeup,...]

One throwaway cluster with default settings (cluster.py; DATABASE_URL names another server
whose role may create databases), a fresh database per measurement. Repetitions are
interleaved: every system's repetition 1 runs before anyone's repetition 2, and the order
of systems rotates each repetition so no one always goes first.

- drain, wakeup, enqueue: the drivers in bench/peers (interface in bench/peers/README.md),
  skiplock's with this Python, the peers' with bench/.venv (bench/peers/setup.sh). A drain
  also reports the CPU the Postgres cluster and the workers spent per job (from /proc).
- noisy (noisy neighbour, skiplock only): company A's 10,000 queued jobs drain while company
  B submits one job every 100 ms; B's wait (submit -> start) with the shipped claim (fair)
  and with the claim before 0006 (fifo, bench/worker/fifo_claim.sql).
- http (POST /content-jobs, 1 and 8 keep-alive clients) and sse (streams on one serve
  process while 200 jobs/s are committed): bench/api/run.py, skiplock only.
- ceiling: pgbench on a minimal table and on skiplock's schema (bench/ceiling/ceiling.py).

It prints one line per step and rewrites the part of --out between the markers BEGIN and
END below, keeping the rest of the file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache, partial
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "ceiling"))
sys.path.insert(0, str(HERE))

import ceiling  # noqa: E402  (bench/ceiling/ceiling.py)
from cluster import fresh_database, server  # noqa: E402

PEER_PYTHON = HERE / ".venv/bin/python"
SYSTEMS = ["skiplock", "pgqueuer", "procrastinate", "chancy"]
# chancy's default profile polls every 5 s without eager polling: ~20 jobs/s, 1,000 s per
# drain of 20,000, so only its raised profile drains here.
DRAIN_PROFILES = {
    "skiplock": ["default", "raised"],
    "pgqueuer": ["default", "raised"],
    "procrastinate": ["default", "raised"],
    "chancy": ["raised"],
}
CASES = ("drain", "wakeup", "enqueue", "noisy", "http", "sse", "ceiling")
NOISY_CLAIMS = ("fair", "fifo")
NOISY_BACKLOG = 10_000
BEGIN, END = "<!-- skiplock bench: begin -->", "<!-- skiplock bench: end -->"
INSERT_NOTIFY_8 = "INSERT + NOTIFY | 8"  # the ceiling the 8-client HTTP submit is judged by
SSE_PER_COMPANY = 10
SSE_RATE = 200.0
# The report's en dash in "median [min-max]" and its multiplication sign, spelled as escapes
# because ruff flags them (RUF001) as look-alikes of "-" and "x" in literals.
DASH, TIMES = "\u2013", "\u00d7"


@dataclass(frozen=True)
class Windows:
    """How long the timed workloads run (drain, wake-up and enqueue are sized by count)."""

    ceiling_s: float
    submit_s: float
    submit_warmup_s: float
    sse_s: float
    sse_companies: int


FULL = Windows(ceiling_s=4, submit_s=8, submit_warmup_s=1, sse_s=10, sse_companies=100)
QUICK = Windows(ceiling_s=2, submit_s=2, submit_warmup_s=0.5, sse_s=4, sse_companies=20)


@dataclass(frozen=True)
class Options:
    argv: tuple[str, ...]
    jobs: int
    repeat: int
    out: Path
    only: tuple[str, ...]
    systems: tuple[str, ...]
    windows: Windows


@dataclass(frozen=True)
class Step:
    case: str  # the table row group: drain1, drain2, wakeup, enqueue, http1, http8, sse, ceiling
    system: str
    profile: str  # drain profile, or the ceiling case
    label: str
    rep: int
    run: Callable[[], dict[str, Any]]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.case, self.system, self.profile)


Results = dict[tuple[str, str, str], list[dict[str, Any]]]


# -- options ---------------------------------------------------------------------------------


def parse(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(prog="skiplock bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 repetition, short windows")
    parser.add_argument("--no-peers", action="store_true", help="skiplock and the ceiling only")
    parser.add_argument("--jobs", type=int, help="jobs per drain and enqueue (default 20000)")
    parser.add_argument("--repeat", type=int, help="repetitions (default 3)")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument(
        "--only", type=only_cases, default=CASES, metavar="CASES", help=",".join(CASES)
    )
    args = parser.parse_args(argv)
    return Options(
        argv=tuple(argv),
        jobs=args.jobs or (2_000 if args.quick else 20_000),
        repeat=args.repeat or (1 if args.quick else 3),
        out=args.out,
        only=args.only,
        systems=("skiplock",) if args.no_peers else tuple(SYSTEMS),
        windows=QUICK if args.quick else FULL,
    )


def only_cases(value: str) -> tuple[str, ...]:
    chosen = tuple(c for c in value.split(",") if c)
    unknown = set(chosen) - set(CASES)
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {','.join(CASES)}")
    return tuple(c for c in CASES if c in chosen)


# -- running the drivers and the API bench ---------------------------------------------------


def run_driver(server_url: str, library: str, *args: str) -> dict[str, Any]:
    """One driver run on a fresh, empty database: its JSON, or RuntimeError(last stderr line)."""
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        python = sys.executable if library == "skiplock" else str(PEER_PYTHON)
        command = [python, str(HERE / f"peers/{library}_driver.py")]
        command += ["--database-url", make_conninfo(server_url, dbname=name), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)  # noqa: S603
        if done.returncode != 0:
            raise RuntimeError((done.stderr.strip().splitlines() or ["failed"])[-1])
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def drain(url: str, system: str, jobs: int, processes: int, profile: str) -> dict[str, Any]:
    r = run_driver(
        url, system, "--workload", "drain", "--jobs", str(jobs),
        "--processes", str(processes), "--profile", profile,
    )  # fmt: skip
    return {
        "version": r["version"],
        "jobs_per_s": r["jobs_per_s"],
        "boot_s": r["boot_s"],
        "rss_idle_mib": max(r["rss_idle_mib"]),
        "rss_peak_mib": max(r["rss_peak_mib"]),
        "db_cpu_us_per_job": r["db_cpu_us_per_job"],
        "worker_cpu_us_per_job": r["worker_cpu_us_per_job"],
    }


def noisy(url: str, claim: str, jobs: int) -> dict[str, Any]:
    backlog = str(min(NOISY_BACKLOG, jobs))  # 10,000; fewer for --quick and small --jobs
    r = run_driver(url, "skiplock", "--workload", "noisy", "--claim", claim, "--jobs", backlog)
    fields = ("quiet_jobs", "quiet_wait_p50_ms", "quiet_wait_p99_ms", "quiet_wait_max_ms")
    return {"version": r["version"], "busy_jobs_per_s": r["busy_jobs_per_s"]} | {
        k: r[k] for k in fields
    }


def wakeup(url: str, system: str) -> dict[str, Any]:
    r = run_driver(url, system, "--workload", "wakeup")
    values = r["latencies_ms"]
    figures = {name: percentile(values, p) for name, p in (("p50", 50), ("p95", 95), ("p99", 99))}
    return {"version": r["version"], **figures, "max": max(values)}


def enqueue(url: str, system: str, jobs: int) -> dict[str, Any]:
    r = run_driver(url, system, "--workload", "enqueue", "--jobs", str(jobs))
    return {
        "version": r["version"],
        "one_per_s": r["enqueue_one_per_s"],
        "batch_per_s": r["enqueue_batch_per_s"],
    }


@cache
def api_bench() -> ModuleType:
    """bench/api/run.py (not a package). Loaded under its own name "run" with its folder on
    sys.path: the SSE enqueuer is a spawned process that imports run.enqueue_paced by name."""
    sys.path.insert(0, str(HERE / "api"))
    spec = importlib.util.spec_from_file_location("run", HERE / "api/run.py")
    assert spec is not None and spec.loader is not None  # noqa: S101  (the file is ours)
    module = importlib.util.module_from_spec(spec)
    sys.modules["run"] = module
    spec.loader.exec_module(module)
    return module


def http_submit(url: str, clients: int, windows: Windows) -> dict[str, Any]:
    args = argparse.Namespace(
        seconds=windows.submit_s, warmup=windows.submit_warmup_s, client="raw", prefill=0
    )
    r = api_bench().submit_run(url, clients, args)
    return {k: r[k] for k in ("jobs_per_s", "p50_ms", "p99_ms")}


def sse(url: str, windows: Windows) -> dict[str, Any]:
    args = argparse.Namespace(prefill=0, rate=SSE_RATE, sse_seconds=windows.sse_s)
    r = api_bench().sse_run(url, windows.sse_companies, SSE_PER_COMPANY, args)
    fields = ("clients", "p50_ms", "p99_ms", "max_ms", "pairs", "expected_pairs")
    return {
        **{k: r[k] for k in fields},
        **{k: r[k] for k in ("rss_idle_mib", "rss_mib", "hwm_mib")},
        "db_connections": r["db_connections_busy"][0],
    }


def ceiling_case(url: str, case: ceiling.Case, seconds: float) -> dict[str, Any]:
    with fresh_database(url) as database:
        return ceiling.run_case(database, case, seconds)


# -- the plan: which steps, in which order ---------------------------------------------------


def rotated(systems: tuple[str, ...], rep: int) -> list[str]:
    k = (rep - 1) % len(systems)
    return [*systems[k:], *systems[:k]]


def drain_steps(opts: Options, url: str, rep: int) -> list[Step]:
    steps = []
    for processes in (1, 2):
        for system in rotated(opts.systems, rep):
            for profile in DRAIN_PROFILES[system]:
                label = f"drain, {processes} process{'es' if processes > 1 else ''}: "
                run = partial(drain, url, system, opts.jobs, processes, profile)
                steps.append(
                    Step(
                        f"drain{processes}",
                        system,
                        profile,
                        label + f"{system} {profile}",
                        rep,
                        run,
                    )
                )
    return steps


def wakeup_steps(opts: Options, url: str, rep: int) -> list[Step]:
    return [
        Step("wakeup", s, "", f"wake-up: {s}", rep, partial(wakeup, url, s))
        for s in rotated(opts.systems, rep)
    ]


def enqueue_steps(opts: Options, url: str, rep: int) -> list[Step]:
    return [
        Step("enqueue", s, "", f"enqueue: {s}", rep, partial(enqueue, url, s, opts.jobs))
        for s in rotated(opts.systems, rep)
    ]


def noisy_steps(opts: Options, url: str, rep: int) -> list[Step]:
    claims = NOISY_CLAIMS if rep % 2 else NOISY_CLAIMS[::-1]
    return [
        Step("noisy", "skiplock", claim, f"noisy neighbour: skiplock, {claim} claim", rep,
             partial(noisy, url, claim, opts.jobs))
        for claim in claims
    ]  # fmt: skip


def http_steps(opts: Options, url: str, rep: int) -> list[Step]:
    steps = []
    for clients in (1, 8):
        run = partial(http_submit, url, clients, opts.windows)
        label = f"HTTP submit, {clients} client(s): skiplock"
        steps.append(Step(f"http{clients}", "skiplock", "", label, rep, run))
    return steps


def sse_steps(opts: Options, url: str, rep: int) -> list[Step]:
    clients = opts.windows.sse_companies * SSE_PER_COMPANY
    run = partial(sse, url, opts.windows)
    return [Step("sse", "skiplock", "", f"SSE, {clients} clients: skiplock", rep, run)]


def ceiling_steps(opts: Options, url: str, rep: int) -> list[Step]:
    steps = []
    for case in ceiling.CASES:
        run = partial(ceiling_case, url, case, opts.windows.ceiling_s)
        label = f"ceiling: {case.label}, {case.clients} conn."
        steps.append(Step("ceiling", "postgres", case.key, label, rep, run))
    return steps


PLANNERS = {
    "drain": drain_steps,
    "wakeup": wakeup_steps,
    "enqueue": enqueue_steps,
    "noisy": noisy_steps,
    "http": http_steps,
    "sse": sse_steps,
    "ceiling": ceiling_steps,
}


def plan(opts: Options, url: str) -> list[Step]:
    return [
        step
        for rep in range(1, opts.repeat + 1)
        for case in opts.only
        for step in PLANNERS[case](opts, url, rep)
    ]


# -- running the steps -----------------------------------------------------------------------


def clock(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[-1] if lines else type(exc).__name__)[:160]


def describe(case: str, r: dict[str, Any]) -> str:
    """The step's result, short, for its progress line."""
    if "error" in r:
        return f"error: {r['error']}"
    if case.startswith("drain"):
        return (
            f"{r['jobs_per_s']:,.0f} jobs/s; CPU per job: database "
            f"{r['db_cpu_us_per_job']:.0f} us, workers {r['worker_cpu_us_per_job']:.0f} us"
        )
    if case.startswith("http"):
        return f"{r['jobs_per_s']:,.0f} jobs/s"
    if case == "noisy":
        return (
            f"B waits p50 {r['quiet_wait_p50_ms']:.1f} ms, p99 {r['quiet_wait_p99_ms']:.1f} ms; "
            f"A drains {r['busy_jobs_per_s']:,.0f} jobs/s"
        )
    if case == "wakeup":
        return f"p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms"
    if case == "enqueue":
        return f"{r['one_per_s']:,.0f} one at a time, {r['batch_per_s']:,.0f} batched, jobs/s"
    if case == "sse":
        return f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, {r['db_connections']} DB conn."
    return f"{r['tx_s']:,.0f} tx/s, {r['jobs_s']:,.0f} jobs/s"


def run_steps(steps: list[Step], repeat: int, started: float) -> Results:
    results: Results = defaultdict(list)
    width = len(str(len(steps)))
    for i, step in enumerate(steps, 1):
        head = f"[{i:>{width}}/{len(steps)} {clock(time.monotonic() - started):>6}]"
        print(f"{head} {step.label} (rep {step.rep}/{repeat}) … ", end="", flush=True)
        try:
            result = step.run()
        except Exception as exc:  # one failed step is an error cell, never the end of the run
            result = {"error": one_line(exc)}
        print(describe(step.case, result), flush=True)
        results[step.key].append(result)
    return results


def ensure_peers(opts: Options) -> None:
    """bench/.venv with the pinned peers from PyPI, made once (bench/peers/setup.sh)."""
    if len(opts.systems) == 1 or PEER_PYTHON.exists():
        return
    print("setting up bench/.venv (bench/peers/setup.sh, pinned peers from PyPI) …", flush=True)
    done = subprocess.run(["bash", str(HERE / "peers/setup.sh")], check=False)  # noqa: S603, S607
    if done.returncode != 0:  # the peers' drivers will then fail: error cells, not a crash
        print(f"bench/peers/setup.sh failed (exit {done.returncode})", flush=True)


def raise_open_files() -> None:
    """1,000 SSE streams are 1,000 sockets in this process (as bench/api/run.py's main())."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))


# -- figures ---------------------------------------------------------------------------------


def values(runs: list[dict[str, Any]], field: str) -> list[float]:
    return [r[field] for r in runs if field in r]


def median(runs: list[dict[str, Any]], field: str) -> float | None:
    found = values(runs, field)
    return statistics.median(found) if found else None


def number(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def cell(runs: list[dict[str, Any]] | None, field: str, digits: int = 0) -> str:
    """`median [min-max]` over the repetitions; the last error if every one failed."""
    if not runs:
        return "not run"
    found = values(runs, field)
    errors = [r["error"] for r in runs if "error" in r]
    if not found:
        return "error: " + str(errors[-1]).replace("|", "\\|")
    text = number(statistics.median(found), digits)
    if len(found) > 1:
        text += f" [{number(min(found), digits)}{DASH}{number(max(found), digits)}]"
    return text + (f" ({len(errors)} failed)" if errors else "")


def best(
    results: Results, case: str, systems: Sequence[str], field: str, highest: bool = True
) -> tuple[float, tuple[str, str, str]] | None:
    """The (median, key) of the best system/profile of a case by median, or None."""
    found = [
        (m, key)
        for key, runs in results.items()
        if key[0] == case and key[1] in systems and (m := median(runs, field)) is not None
    ]
    if not found:
        return None
    return max(found) if highest else min(found)


# -- the report ------------------------------------------------------------------------------


def read_first(path: str, name: str, separator: str = ":") -> str:
    """The value of the first `name<separator>value` line of a file like /proc/cpuinfo."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return "unknown"
    pairs = (line.partition(separator) for line in lines)
    return next((v.strip() for k, _, v in pairs if k.strip() == name), "unknown")


def setting(conn: psycopg.Connection[Any], name: str) -> str:
    row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
    return str(row[0]) if row else "unknown"


def environment(url: str) -> list[str]:
    cpu = read_first("/proc/cpuinfo", "model name")
    ram_kib = read_first("/proc/meminfo", "MemTotal").split()[0]
    ram = f"{int(ram_kib) / 1024**2:.1f} GiB" if ram_kib.isdigit() else "unknown"
    os_name = read_first("/etc/os-release", "PRETTY_NAME", "=").strip('"')
    with psycopg.connect(url) as conn:
        pg = conn.execute("SELECT version()").fetchone()
        names = ("fsync", "synchronous_commit", "full_page_writes", "shared_buffers")
        shown = [f"{n} {setting(conn, n)}" for n in names]
    where = (
        "the server DATABASE_URL names"
        if os.environ.get("DATABASE_URL")
        else "a throwaway cluster with default settings"
    )
    return [
        f"- Machine: {cpu}, {os.cpu_count()} cores, {ram} RAM; {os_name}, "
        f"Linux {platform.release()}",
        f"- Python {platform.python_version()}; psycopg {version('psycopg')}",
        f"- {pg[0] if pg else 'PostgreSQL'}",
        f"- Postgres: {where} ({', '.join(shown)}), shared by every process of the bench",
    ]


def versions(opts: Options, results: Results) -> str:
    found = {key[1]: r["version"] for key, runs in results.items() for r in runs if "version" in r}
    found.setdefault("skiplock", version("skiplock"))
    return ", ".join(
        f"{s} {found.get(s, 'not run' if s not in opts.systems else 'unknown')}" for s in SYSTEMS
    )


def table(header: Sequence[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def drain_table(opts: Options, results: Results) -> list[str]:
    rows = []
    for processes in (1, 2):
        for system in SYSTEMS:
            for profile in DRAIN_PROFILES[system]:
                runs = results.get((f"drain{processes}", system, profile))
                rows.append(
                    [
                        str(processes), system, profile, cell(runs, "jobs_per_s"),
                        cell(runs, "db_cpu_us_per_job"), cell(runs, "worker_cpu_us_per_job"),
                        cell(runs, "boot_s", 2), cell(runs, "rss_idle_mib", 1),
                        cell(runs, "rss_peak_mib", 1),
                    ]
                )  # fmt: skip
    header = [
        "processes", "system", "profile", "jobs/s", "database CPU µs/job",
        "worker CPU µs/job", "boot s", "RSS idle MiB", "RSS peak MiB",
    ]  # fmt: skip
    return [
        f"### Drain ({opts.jobs:,} no-op jobs)",
        "",
        "CPU per job: the Postgres cluster's processes (backends, WAL writer, checkpointer,",
        "autovacuum...) and the worker processes, from /proc, from the release of the jobs to",
        "the first poll that finds none left, divided by the jobs.",
        "",
        *table(header, rows),
    ]


def noisy_table(opts: Options, results: Results) -> list[str]:
    rows = []
    for claim, what in (("fair", "companies take turns (shipped)"), ("fifo", "FIFO (before 0006)")):
        runs = results.get(("noisy", "skiplock", claim))
        rows.append(
            [
                what, cell(runs, "quiet_wait_p50_ms", 1), cell(runs, "quiet_wait_p99_ms", 1),
                cell(runs, "quiet_wait_max_ms", 1), cell(runs, "quiet_jobs"),
                cell(runs, "busy_jobs_per_s"),
            ]
        )  # fmt: skip
    header = [
        "claim", "B wait p50 ms", "B wait p99 ms", "B wait max ms", "B jobs", "A drain jobs/s",
    ]  # fmt: skip
    return [
        f"### Noisy neighbour: A's {min(NOISY_BACKLOG, opts.jobs):,} queued jobs, B submits "
        "one every 100 ms",
        "",
        "One skiplock worker (--concurrency 10); no-op handlers; B's wait = its enqueue's",
        "commit returned -> its handler started.",
        "",
        *table(header, rows),
    ]


def wakeup_table(results: Results) -> list[str]:
    rows = [
        [s, *(cell(results.get(("wakeup", s, "")), f, 2) for f in ("p50", "p95", "p99", "max"))]
        for s in SYSTEMS
    ]
    return [
        "### Wake-up: enqueue commit returned → handler start, ms",
        "",
        *table(["system", "p50", "p95", "p99", "max"], rows),
    ]


def enqueue_table(opts: Options, results: Results) -> list[str]:
    rows = []
    for system in SYSTEMS:
        runs = results.get(("enqueue", system, ""))
        one = "`enqueue_content_job()`, SQL" if system == "skiplock" else "library API"
        many = "`enqueue_content_jobs()`, SQL" if system == "skiplock" else "library API"
        rows.append([system, f"one at a time, {one}", cell(runs, "one_per_s"), ""])
        rows.append([system, f"batches of 1,000, {many}", cell(runs, "batch_per_s"), ""])
    for clients in (1, 8):
        runs = results.get((f"http{clients}", "skiplock", ""))
        latency = f"{cell(runs, 'p50_ms', 2)} / {cell(runs, 'p99_ms', 2)}"
        how = f"POST /content-jobs, {clients} keep-alive client(s)"
        rows.append(["skiplock", how, cell(runs, "jobs_per_s"), latency])
    return [
        f"### Enqueue ({opts.jobs:,} jobs; HTTP for {opts.windows.submit_s:g} s)",
        "",
        *table(["system", "how", "jobs/s", "latency p50 / p99 ms"], rows),
    ]


def sse_table(opts: Options, results: Results) -> list[str]:
    runs = results.get(("sse", "skiplock", ""))
    w = opts.windows
    rows = [
        ["commit → client p50 / p99 / max, ms",
         f"{cell(runs, 'p50_ms', 1)} / {cell(runs, 'p99_ms', 1)} / {cell(runs, 'max_ms', 1)}"],
        ["events received / expected", f"{cell(runs, 'pairs')} / {cell(runs, 'expected_pairs')}"],
        ["serve RSS idle / after / peak, MiB",
         f"{cell(runs, 'rss_idle_mib', 1)} / {cell(runs, 'rss_mib', 1)} / "
         f"{cell(runs, 'hwm_mib', 1)}"],
        ["serve DB connections during the load", cell(runs, "db_connections")],
    ]  # fmt: skip
    title = (
        f"### SSE: {w.sse_companies * SSE_PER_COMPANY} streams on one serve process "
        f"({w.sse_companies} companies {TIMES} {SSE_PER_COMPANY}), "
        f"{SSE_RATE:g} jobs/s for {w.sse_s:g} s"
    )
    return [title, "", *table(["figure", "skiplock"], rows)]


def ceiling_table(opts: Options, results: Results) -> list[str]:
    rows = []
    for case in ceiling.CASES:
        runs = results.get(("ceiling", "postgres", case.key))
        jobs = cell(runs, "jobs_s") if case.batch else ""
        rows.append([case.label, str(case.clients), cell(runs, "tx_s"), jobs])
    return [
        f"### Postgres ceiling (pgbench -n -M prepared, about {opts.windows.ceiling_s:g} s a case)",
        "",
        *table(["case", "connections", "transactions/s", "jobs/s"], rows),
    ]


# -- the targets -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    figure: str
    skiplock: str
    peer: str
    ratio: float | None
    target: str
    met: bool | None  # None: cannot be judged (peers or a figure missing)

    def row(self) -> list[str]:
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}{TIMES}"
        met = {True: "met", False: "**not met**", None: "not judged"}[self.met]
        return [self.figure, self.skiplock, self.peer, ratio, self.target, met]


def absent(results: Results, case: str, systems: Sequence[str]) -> str:
    """Why a figure is missing: its steps all failed, or none ran."""
    ran = any(key[0] == case and key[1] in systems for key in results)
    return "error" if ran else "not run"


def peer_text(
    results: Results, case: str, found: tuple[float, tuple[str, str, str]] | None, digits: int
) -> str:
    if found is None:
        return absent(results, case, SYSTEMS[1:])
    value, (_, system, profile) = found
    return f"{number(value, digits)} ({system}{' ' + profile if profile else ''})"


def relative(
    results: Results, figure: str, sk: tuple[str, str], peer: tuple[str, str],
    factor: float, goal: str = "",
) -> Target:  # fmt: skip
    """skiplock's best (case, field) against the best peer's: at least `factor` times it."""
    mine = best(results, sk[0], ["skiplock"], sk[1])
    theirs = best(results, peer[0], SYSTEMS[1:], peer[1])
    ratio = mine[0] / theirs[0] if mine and theirs else None
    return Target(
        figure,
        cell(results.get(mine[1]), sk[1]) if mine else absent(results, sk[0], ["skiplock"]),
        peer_text(results, peer[0], theirs, 0),
        ratio,
        f"≥ {factor:g}{TIMES} best peer" + (f" ({goal})" if goal else ""),
        None if ratio is None else ratio >= factor,
    )


def cpu_target(results: Results, processes: int) -> Target:
    """Database CPU per drained job of skiplock's raised profile against PgQueuer's raised
    profile in the same run (lower is better): at most PgQueuer's."""
    case = f"drain{processes}"
    mine = results.get((case, "skiplock", "raised"), [])
    theirs = results.get((case, "pgqueuer", "raised"), [])
    a, b = median(mine, "db_cpu_us_per_job"), median(theirs, "db_cpu_us_per_job")
    ratio = a / b if a is not None and b else None
    return Target(
        f"database CPU per drained job, {processes} process{'es' * (processes > 1)}, µs",
        cell(mine, "db_cpu_us_per_job") if mine else absent(results, case, ["skiplock"]),
        f"{number(b, 0)} (pgqueuer raised)" if b else absent(results, case, ["pgqueuer"]),
        ratio,
        f"≤ 1{TIMES} pgqueuer raised (lower is better)",
        None if ratio is None else ratio <= 1.0,
    )


def noisy_target(results: Results) -> Target:
    fair = results.get(("noisy", "skiplock", "fair"), [])
    fifo = median(results.get(("noisy", "skiplock", "fifo"), []), "quiet_wait_p99_ms")
    target = absolute(
        "noisy neighbour: B's wait p99 while A's backlog drains, ms", fair, "quiet_wait_p99_ms",
        1, 100, "≤ 100 ms (one submit interval)",
    )  # fmt: skip
    return replace(target, peer=f"FIFO claim: {number(fifo, 1)}" if fifo else "FIFO not run")


def wakeup_targets(results: Results) -> list[Target]:
    runs = results.get(("wakeup", "skiplock", ""), [])
    targets = []
    for field, limit, versus_peers in (("p50", 1.5, True), ("p99", 3.0, False)):
        mine = median(runs, field)
        theirs = best(results, "wakeup", SYSTEMS[1:], field, highest=False)
        ratio = mine / theirs[0] if mine is not None and theirs else None
        met = None if mine is None else mine <= limit
        if versus_peers and met:
            met = None if theirs is None else mine is not None and mine < theirs[0]
        goal = f"≤ {limit:g} ms" + (" and below every peer" if versus_peers else "")
        targets.append(
            Target(f"wake-up {field}, ms", cell(runs, field, 2),
                   peer_text(results, "wakeup", theirs, 2), ratio, goal, met)
        )  # fmt: skip
    return targets


def http_ceiling_target(results: Results) -> Target:
    runs = results.get(("http8", "skiplock", ""), [])
    mine = median(runs, "jobs_per_s")
    ceil = median(results.get(("ceiling", "postgres", INSERT_NOTIFY_8), []), "tx_s")
    ratio = mine / ceil if mine is not None and ceil else None
    return Target(
        "enqueue, HTTP 8 clients, jobs/s",
        cell(runs, "jobs_per_s"),
        f"ceiling INSERT + NOTIFY, 8 conn.: {number(ceil, 0)}" if ceil else "ceiling not run",
        ratio,
        f"≥ 0.5 {TIMES} that ceiling",
        None if ratio is None else ratio >= 0.5,
    )


def absolute(
    figure: str, runs: list[dict[str, Any]], field: str, digits: int, limit: float, goal: str
) -> Target:
    mine = median(runs, field)
    met = None if mine is None else mine <= limit
    return Target(figure, cell(runs, field, digits), "—", None, goal, met)


def rss_target(results: Results) -> Target:
    """The worst idle RSS of any skiplock drain run (every profile and process count)."""
    mine = [best(results, f"drain{p}", ["skiplock"], "rss_idle_mib") for p in (1, 2)]
    theirs = [
        best(results, f"drain{p}", SYSTEMS[1:], "rss_idle_mib", highest=False) for p in (1, 2)
    ]
    worst = max((m for m in mine if m), default=None)
    runs = results.get(worst[1], []) if worst else []
    target = absolute("worker RSS idle, MiB (worst skiplock run)", runs, "rss_idle_mib", 1, 45,
                      "≤ 45 MiB")  # fmt: skip
    lightest = min((t for t in theirs if t), default=None)
    return replace(target, peer=peer_text(results, "drain1", lightest, 1))


def targets_table(opts: Options, results: Results) -> list[str]:
    sse_runs = results.get(("sse", "skiplock", ""), [])
    targets = [
        relative(results, "drain, 1 process, jobs/s", ("drain1", "jobs_per_s"),
                 ("drain1", "jobs_per_s"), 1.2, f"goal 1.5{TIMES}"),
        relative(results, "drain, 2 processes, jobs/s", ("drain2", "jobs_per_s"),
                 ("drain2", "jobs_per_s"), 1.2, f"goal 1.5{TIMES}"),
        cpu_target(results, 1),
        cpu_target(results, 2),
        absolute("worker CPU per drained job, 1 process (raised), µs",
                 results.get(("drain1", "skiplock", "raised"), []), "worker_cpu_us_per_job",
                 0, 20, "< 20 µs"),
        noisy_target(results),
        *wakeup_targets(results),
        relative(results, "enqueue, HTTP 1 client vs peers one at a time, jobs/s",
                 ("http1", "jobs_per_s"), ("enqueue", "one_per_s"), 1.0),
        http_ceiling_target(results),
        relative(results, "enqueue, SQL batches of 1,000, jobs/s",
                 ("enqueue", "batch_per_s"), ("enqueue", "batch_per_s"), 1.0),
        absolute("SSE commit → client p99, ms", sse_runs, "p99_ms", 1, 50, "≤ 50 ms"),
        absolute("SSE: serve's DB connections", sse_runs, "db_connections", 0, 11,
                 "small: ≤ 11 (pool of 10 + 1 LISTEN)"),
        rss_target(results),
    ]  # fmt: skip
    header = ["figure", "skiplock", "best peer", "skiplock / best peer", "target", "met?"]
    return ["### Targets", "", *table(header, [t.row() for t in targets])]


def report(opts: Options, url: str, results: Results, seconds: float) -> str:
    w = opts.windows
    lines = [
        f"## `skiplock bench`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        "Written by `skiplock bench` (bench/suite.py); do not edit between the markers.",
        "",
        *environment(url),
        f"- Versions: {versions(opts, results)}",
        f"- {opts.repeat} repetition(s), interleaved (the order of systems rotates each "
        f"repetition); figures are median [min{DASH}max] over them. No-op handlers.",
        f"- Windows: HTTP submit {w.submit_s:g} s after {w.submit_warmup_s:g} s warm-up; "
        f"SSE {w.sse_s:g} s; ceiling about {w.ceiling_s:g} s a case.",
        f"- Duration: {clock(seconds)}",
        "",
        "Command:",
        "",
        f"    {shlex.join(['skiplock', 'bench', *opts.argv])}",
        "",
        *targets_table(opts, results),
        *drain_table(opts, results),
        *noisy_table(opts, results),
        *wakeup_table(results),
        *enqueue_table(opts, results),
        *sse_table(opts, results),
        *ceiling_table(opts, results),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_report(path: Path, section: str) -> None:
    """Replace the part between the markers; keep (or start) the hand-written rest."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    block = f"{BEGIN}\n{section}{END}"
    if BEGIN in text and END in text.split(BEGIN, 1)[1]:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    ensure_peers(opts)
    raise_open_files()
    with server() as url:
        steps = plan(opts, url)
        print(f"skiplock bench: {len(steps)} steps, {opts.repeat} repetition(s)", flush=True)
        results = run_steps(steps, opts.repeat, started)
        section = report(opts, url, results, time.monotonic() - started)
    write_report(opts.out, section)
    print(f"wrote {opts.out} in {clock(time.monotonic() - started)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
