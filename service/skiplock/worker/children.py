"""How `ctx.run` starts a child: its own process group, a minimal environment, resource limits.

A child runs a renderer on a tenant's input, so it is treated as hostile:

- **Environment.** It gets PATH, the locale (LANG, LC_ALL, LC_CTYPE), TZ, HOME and TMPDIR
  pointing at the job's workdir, the variables named in SKIPLOCK_CHILD_ENV, and what the
  handler passes as `env=`; never the worker's own environment, so no DATABASE_URL, AWS_*
  key or other secret reaches a program that a tenant's input drives.
- **Limits**, set in the child between fork and exec (setrlimit, inherited by everything it
  starts): memory (RLIMIT_DATA, SKIPLOCK_CHILD_MEMORY_MB), CPU time (RLIMIT_CPU,
  SKIPLOCK_CHILD_CPU_SECONDS) and the size of any one file it writes (RLIMIT_FSIZE, the
  output limit SKIPLOCK_GENERATED_ASSET_MAX_BYTES). A 60-byte DOT once made `dot` allocate
  4.2 GB; under the limit its allocation fails at once and only that job fails.

RLIMIT_DATA, not RLIMIT_AS: the address space counts what a process only reserves. glibc
reserves 64 MiB per thread arena and every thread an 8 MiB stack, so x264 encoding 4K had
859 MiB of address space for 303 MiB in use on 2 cores, and the reservations grow with the
host's core count: an address-space limit that fits a 2-core CI box kills ffmpeg on a
32-core one. RLIMIT_DATA (Linux 4.7+) counts the private memory a process can write, heap
and anonymous mappings, which is what an over-allocation grows.
"""

from __future__ import annotations

import os
import resource
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from skiplock.settings import Settings

# What a child inherits from the worker's environment (when set there), beside its own.
INHERITED = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"

# Exit signs of a child that ran out of memory: the words renderers print as they fail.
_OUT_OF_MEMORY = (b"out of memory", b"cannot allocate memory", b"memoryerror", b"bad_alloc")
_CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS}

Limit = tuple[int, tuple[int, int]]


@dataclass(frozen=True)
class ChildLimits:
    """Resource limits of each child a handler starts with ctx.run (None: no limit).

    memory_mb: private memory the child may write (RLIMIT_DATA), in MiB.
    cpu_seconds: CPU time (RLIMIT_CPU): SIGXCPU at the limit, SIGKILL 5 s later.
    file_bytes: the largest file it may write (RLIMIT_FSIZE): SIGXFSZ past it.
    max_pixels: the largest bitmap a renderer is asked to draw; not a kernel limit: the
        built-in renderers check it before they start `dot` (SKIPLOCK_RENDER_MAX_PIXELS).
    """

    memory_mb: int | None = None
    cpu_seconds: int | None = None
    file_bytes: int | None = None
    max_pixels: int | None = None

    def preexec(self) -> Callable[[], None]:
        """What runs in the child before exec: setrlimit calls worked out here, in the parent,
        so the child (forked from a threaded process) runs no Python beyond them."""
        wanted = []
        if self.memory_mb is not None:
            wanted.append((resource.RLIMIT_DATA, self.memory_mb << 20, 0))
        if self.cpu_seconds is not None:
            # The soft limit signals SIGXCPU (which the child may catch), the hard one kills.
            wanted.append((resource.RLIMIT_CPU, self.cpu_seconds, 5))
        if self.file_bytes is not None:
            wanted.append((resource.RLIMIT_FSIZE, self.file_bytes, 0))
        limits = [_clamped(kind, value, grace) for kind, value, grace in wanted]
        return lambda: _set_limits(limits)

    def explain(self, returncode: int, stderr: bytes) -> tuple[str, bool]:
        """What a failed child's exit says about these limits, and whether a limit surely
        stopped it (so running the same input again cannot succeed). ("", False) if nothing."""
        # A shell reports a child it ran that a signal killed as 128 + the signal.
        killed_by = -returncode if returncode < 0 else returncode - 128
        if killed_by == signal.SIGXCPU and self.cpu_seconds is not None:
            return (
                f"it used its {self.cpu_seconds} s of CPU time (SKIPLOCK_CHILD_CPU_SECONDS)",
                True,
            )
        if killed_by == signal.SIGXFSZ and self.file_bytes is not None:
            return (
                f"it wrote a file past {self.file_bytes} bytes "
                "(the output limit, SKIPLOCK_GENERATED_ASSET_MAX_BYTES)",
                True,
            )
        lowered = stderr[-4000:].lower()
        out_of_memory = any(words in lowered for words in _OUT_OF_MEMORY)
        if self.memory_mb is not None and (out_of_memory or killed_by in _CRASH_SIGNALS):
            return (
                f"it may have run out of its {self.memory_mb} MiB of memory "
                "(SKIPLOCK_CHILD_MEMORY_MB)",
                out_of_memory,
            )
        return "", False


def child_limits(settings: Settings) -> ChildLimits:
    """The limits the settings give every child (0 lifts a limit)."""
    return ChildLimits(
        memory_mb=settings.child_memory_mb or None,
        cpu_seconds=settings.child_cpu_seconds or None,
        file_bytes=settings.generated_asset_max_bytes,
        max_pixels=settings.render_max_pixels,
    )


def _clamped(kind: int, value: int, grace: int) -> Limit:
    """(kind, (soft, hard)) never above the worker's own hard limit: lowering a limit is
    always allowed, raising a hard one is not (setrlimit would fail in the child)."""
    _, hard = resource.getrlimit(kind)
    top = hard if hard != resource.RLIM_INFINITY else None
    soft = value if top is None else min(value, top)
    ceiling = soft + grace if top is None else min(soft + grace, top)
    return kind, (soft, ceiling)


def _set_limits(limits: list[Limit]) -> None:
    for kind, pair in limits:
        resource.setrlimit(kind, pair)


def child_environment(
    workdir: Path, passed_through: tuple[str, ...], extra: Mapping[str, str] | None
) -> dict[str, str]:
    """The environment of a child: minimal, then SKIPLOCK_CHILD_ENV's names, then `extra`."""
    env = {name: os.environ[name] for name in (*INHERITED, *passed_through) if name in os.environ}
    env.setdefault("PATH", DEFAULT_PATH)
    env["HOME"] = env["TMPDIR"] = str(workdir)
    env.update(extra or {})
    return env


def signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"
