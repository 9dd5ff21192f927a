"""What every driver shares: the interface's command line (README.md), a process's memory
from /proc, and a log line on stderr. Standard library only: the peers' drivers import it
in bench/.venv, skiplock's in the project's venv, bench/worker/run.py too."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

WORKLOADS = ("drain", "wakeup", "enqueue", "noisy")  # noisy: skiplock's driver only


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


# -- CPU time from /proc ----------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name (which may hold spaces and parentheses)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def _task_cpu_ns(pid: int) -> int:
    """On-CPU nanoseconds of every thread of a live process (schedstat: exact, not ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return total


def process_cpu_seconds(pids: Iterable[int]) -> float:
    """CPU seconds used so far by the given live processes (all their threads)."""
    total = 0
    for pid in pids:
        try:
            total += _task_cpu_ns(pid)
        except OSError:
            continue  # gone: its time is lost to us, as it is to `ps`
    return total / 1e9


def postgres_cpu_seconds(backend_pid: int) -> float:
    """CPU seconds used so far by the whole Postgres cluster a backend belongs to: the
    postmaster, every live child (backends, walwriter, checkpointer, autovacuum…), and the
    children it has already reaped (its cutime + cstime, in clock ticks)."""
    postmaster = int(_stat_fields(backend_pid)[1])  # ppid
    ticks = os.sysconf("SC_CLK_TCK")
    fields = _stat_fields(postmaster)
    reaped = (int(fields[13]) + int(fields[14])) / ticks  # cutime + cstime
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat_fields(int(entry.name))[1]) == postmaster:
                    children.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return reaped + process_cpu_seconds([postmaster, *children])


class CpuMeter:
    """CPU seconds of the Postgres cluster and of the worker processes over a window
    (start() ... stop()): the database's and the workers' cost of a drain, per job."""

    def __init__(self, backend_pid: int, worker_pids: Iterable[int]) -> None:
        self.backend_pid = backend_pid
        self.worker_pids = list(worker_pids)
        self.postgres_s = self.workers_s = 0.0

    def start(self) -> None:
        self._pg0 = postgres_cpu_seconds(self.backend_pid)
        self._w0 = process_cpu_seconds(self.worker_pids)

    def stop(self) -> None:
        self.postgres_s = postgres_cpu_seconds(self.backend_pid) - self._pg0
        self.workers_s = process_cpu_seconds(self.worker_pids) - self._w0

    def per_job_us(self, jobs: int) -> dict[str, float]:
        return {
            "db_cpu_us_per_job": round(self.postgres_s / jobs * 1e6, 1),
            "worker_cpu_us_per_job": round(self.workers_s / jobs * 1e6, 1),
        }
