"""A first side-by-side run of the peer drivers: one repetition of each case, one table.

    .venv/bin/python bench/peers/compare.py [--jobs 20000] [--cases drain,wakeup,enqueue]

Each case gets a fresh database on one throwaway cluster (default settings). skiplock's
driver runs in the project's venv, the peers' in bench/.venv (bench/peers/setup.sh).
This is the seed of `skiplock bench` (issue 6), which will interleave three repetitions
and write bench/RESULTS.md; until then, paste what this prints.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))

from cluster import server  # noqa: E402

PYTHON = {"skiplock": REPO / ".venv/bin/python"}
PEER_PYTHON = REPO / "bench/.venv/bin/python"
# chancy's default profile polls every 5 s without eager polling: ~20 jobs/s, 1,000 s per
# drain of 20,000, so only its raised profile drains here.
DRAIN_PROFILES = {
    "skiplock": ["default", "raised"],
    "pgqueuer": ["default", "raised"],
    "procrastinate": ["default", "raised"],
    "chancy": ["raised"],
}


def run_driver(server_url: str, library: str, *args: str) -> dict[str, Any]:
    name = f"cmp_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        python = PYTHON.get(library, PEER_PYTHON)
        command = [str(python), str(HERE / f"{library}_driver.py")]
        command += ["--database-url", make_conninfo(server_url, dbname=name), *args]
        started = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)  # noqa: S603
        if done.returncode != 0:
            return {"error": done.stderr.strip().splitlines()[-1:] or ["failed"]}
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        result["wall_s"] = time.monotonic() - started
        return result
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def drain_table(url: str, jobs: int) -> None:
    print("| library | profile | processes | drain jobs/s | boot s | RSS idle / peak MiB |")
    print("|---|---|---|---|---|---|")
    for processes in (1, 2):
        for library, profiles in DRAIN_PROFILES.items():
            for profile in profiles:
                r = run_driver(
                    url, library, "--workload", "drain", "--jobs", str(jobs),
                    "--processes", str(processes), "--profile", profile,
                )  # fmt: skip
                row = f"| {library} | {profile} | {processes} |"
                if "error" in r:
                    print(f"{row} error: {r['error']} |", flush=True)
                    continue
                idle, peak = max(r["rss_idle_mib"]), max(r["rss_peak_mib"])
                print(
                    f"{row} {r['jobs_per_s']:,.0f} | {r['boot_s']:.2f} | {idle:.1f} / {peak:.1f} |",
                    flush=True,
                )


def wakeup_table(url: str) -> None:
    print("\n| library | wake-up p50 / p95 / p99 / max ms |\n|---|---|")
    for library in DRAIN_PROFILES:
        values = run_driver(url, library, "--workload", "wakeup").get("latencies_ms", [])
        if not values:
            print(f"| {library} | error |", flush=True)
            continue
        figures = [percentile(values, p) for p in (50, 95, 99, 100)]
        print(f"| {library} | {' / '.join(f'{v:.2f}' for v in figures)} |", flush=True)


def enqueue_table(url: str, jobs: int) -> None:
    print("\n| library | enqueue one at a time / in batches of 1,000 (jobs/s) |\n|---|---|")
    for library in DRAIN_PROFILES:
        r = run_driver(url, library, "--workload", "enqueue", "--jobs", str(jobs))
        if "error" in r:
            print(f"| {library} | error: {r['error']} |", flush=True)
            continue
        one, batch = r["enqueue_one_per_s"], r["enqueue_batch_per_s"]
        print(f"| {library} | {one:,.0f} / {batch:,.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--cases", default="drain,wakeup,enqueue")
    args = parser.parse_args()
    cases = args.cases.split(",")
    with server() as url:
        if "drain" in cases:
            drain_table(url, args.jobs)
        if "wakeup" in cases:
            wakeup_table(url)
        if "enqueue" in cases:
            enqueue_table(url, args.jobs)


if __name__ == "__main__":
    main()
