"""What every driver shares: the interface's command line (README.md), a process's memory
from /proc, and a log line on stderr. Standard library only: the peers' drivers import it
in bench/.venv, skiplock's in the project's venv, bench/worker/run.py too."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

WORKLOADS = ("drain", "wakeup", "enqueue")


def interface_parser(
    description: str, profiles: Iterable[str], *, workload_required: bool = True
) -> argparse.ArgumentParser:
    """--database-url, --workload, --jobs, --processes, --profile; a driver may add more."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--workload", choices=WORKLOADS, required=workload_required)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--processes", type=int, choices=(1, 2), default=1)
    parser.add_argument("--profile", choices=sorted(profiles), default="default")
    return parser


def proc_status_mib(pid: int, field: str) -> float:
    """A /proc/<pid>/status field (VmRSS now, VmHWM peak) in MiB, one decimal."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)  # kB
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def logger(name: str) -> Callable[[str], None]:
    """log(message): one line on stderr, prefixed [name] (stdout carries the JSON)."""

    def log(message: str) -> None:
        print(f"[{name}] {message}", file=sys.stderr, flush=True)

    return log
