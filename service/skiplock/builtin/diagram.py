"""The built-in `diagram` type: Graphviz DOT source rendered by `dot` to SVG, PNG or PDF.

    {"source": "digraph { a -> b }", "format": "svg"}

`dot` runs as a child process in the job's workdir (killed with its process group on
timeout, cancellation and shutdown) and writes the file there; the file is streamed into
storage. Invalid DOT fails the job at once with Graphviz's own message: running it again
would fail the same way. A worker without Graphviz still starts; diagram jobs then fail
with a line saying what to install.

A tenant's DOT is treated as hostile. `dot` runs under the child limits (memory, CPU,
file size: worker/children.py), a PNG larger than SKIPLOCK_RENDER_MAX_PIXELS is refused
before `dot` starts (dot_size.py), and Graphviz's own sandbox is on: with SERVER_NAME set
it reads image files (`image=`, `shapefile=`) only from GV_FILE_PATH, here an empty
folder, so a DOT cannot draw another tenant's output or any other file of the worker's
disk into its own. Graphviz's warnings (which name the files it could not open) are left
out of error messages.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from typing import Any

from skiplock.builtin import dot_size
from skiplock.handlers import Output, PermanentError, register
from skiplock.worker.context import ChildLimitExceeded, ChildProcessFailed, JobContext

FORMATS = {
    "svg": "image/svg+xml",
    "png": "image/png",
    "pdf": "application/pdf",
}
MAX_SOURCE_CHARS = 1_000_000
TIMEOUT_SECONDS = 120


def dot_source_schema(max_chars: int) -> dict[str, Any]:
    """The JSON Schema of a DOT source field (here, and each frame of `video`)."""
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": max_chars,
        "description": "Graphviz DOT source, e.g. digraph { a -> b }",
    }


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "source": dot_source_schema(MAX_SOURCE_CHARS),
        "format": {"enum": list(FORMATS), "default": "svg"},
    },
    "required": ["source"],
    "additionalProperties": False,
    # The dashboard's submit form starts from the first example.
    "examples": [{"source": "digraph { submit -> render -> done }", "format": "svg"}],
}

MISSING_DOT = (
    "Graphviz `dot` is not installed on this worker "
    "(install the graphviz package, e.g. apt-get install graphviz)"
)


def dot_available() -> bool:
    return shutil.which("dot") is not None


@register("diagram", timeout=TIMEOUT_SECONDS, schema=SCHEMA)
async def render_diagram(ctx: JobContext, params: dict[str, Any]) -> Output:
    file_format = params.get("format", "svg")
    if not dot_available():
        raise PermanentError(MISSING_DOT)
    if file_format == "png":  # SVG and PDF are drawn as vectors: no bitmap to fill
        check_bitmap(ctx, params["source"])
    target = ctx.workdir / f"diagram.{file_format}"
    await ctx.progress(0.1, "rendering")
    await run_dot(ctx, params["source"], f"-T{file_format}", "-o", str(target))
    await ctx.progress(1.0, "rendered")  # written with the outcome: a done job reads 100%
    return Output(filename=target.name, content_type=FORMATS[file_format], path=target)


def check_bitmap(
    ctx: JobContext,
    source: str,
    defaults: Mapping[str, str] | None = None,
    what: str = "this DOT source",
) -> None:
    """PermanentError when the source asks for a bitmap over the pixel budget."""
    budget = ctx.limits.max_pixels
    bitmap = dot_size.bitmap_bound(source, defaults)
    if budget is None or bitmap is None or bitmap.pixels <= budget:
        return
    raise PermanentError(
        f"{what} asks for a {bitmap.width:.0f} x {bitmap.height:.0f} pixel bitmap "
        f"({bitmap.pixels / 1e6:,.0f} megapixels: {bitmap.because}), over the limit of "
        f"{budget / 1e6:g} megapixels (SKIPLOCK_RENDER_MAX_PIXELS); lower its size or dpi, "
        "or render it as SVG or PDF"
    )


async def run_dot(ctx: JobContext, source: str, *args: str, what: str = "this DOT source") -> None:
    """`dot ARGS` on `source` as a child of the job, in Graphviz's file sandbox. Invalid DOT is
    a PermanentError with Graphviz's own message (running it again would fail the same way);
    `what` names the source in it."""
    no_files = ctx.workdir / "graphviz-files"  # GV_FILE_PATH: the only folder dot may read
    no_files.mkdir(exist_ok=True)
    sandbox = {"SERVER_NAME": "skiplock", "GV_FILE_PATH": str(no_files)}
    try:
        # DOT on stdin, so Graphviz's messages say <stdin> rather than a temp path.
        await ctx.run("dot", *args, input=source.encode("utf-8"), env=sandbox)
    except ChildLimitExceeded as exc:
        said = _errors_only(exc.stderr)
        raise PermanentError(
            f"Graphviz could not render {what}: {exc.summary}" + (f": {said}" if said else "")
        ) from None
    except ChildProcessFailed as exc:
        if exc.returncode < 0:  # killed by a signal: not the DOT's fault, may be retried
            # The same failure, its stderr tail (which goes into error_message) filtered too.
            filtered = _errors_only(exc.stderr).encode("utf-8")
            raise ChildProcessFailed(exc.command, exc.returncode, filtered, exc.hint) from None
        message = _errors_only(exc.stderr) or f"exit status {exc.returncode}"
        raise PermanentError(f"Graphviz could not render {what}: {message}") from None


def _errors_only(stderr: bytes) -> str:
    """dot's stderr without its `Warning:` lines: they name files it could or could not
    open, which would tell a tenant what exists on the worker's disk."""
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    return "\n".join(line for line in lines if not line.startswith("Warning:")).strip()
