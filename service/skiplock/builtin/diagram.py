"""The built-in `diagram` type: Graphviz DOT source rendered by `dot` to SVG, PNG or PDF.

    {"source": "digraph { a -> b }", "format": "svg"}

`dot` runs as a child process in the job's workdir (killed with its process group on
timeout, cancellation and shutdown) and writes the file there; the file is streamed into
storage. Invalid DOT fails the job at once with Graphviz's own message: running it again
would fail the same way. A worker without Graphviz still starts; diagram jobs then fail
with a line saying what to install.
"""

from __future__ import annotations

import shutil
from typing import Any

from skiplock.handlers import Output, PermanentError, register
from skiplock.worker.context import ChildProcessFailed, JobContext

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
    target = ctx.workdir / f"diagram.{file_format}"
    await ctx.progress(0.1, "rendering")
    await run_dot(ctx, params["source"], f"-T{file_format}", "-o", str(target))
    await ctx.progress(1.0, "rendered")  # written with the outcome: a done job reads 100%
    return Output(filename=target.name, content_type=FORMATS[file_format], path=target)


async def run_dot(ctx: JobContext, source: str, *args: str, what: str = "this DOT source") -> None:
    """`dot ARGS` on `source` as a child of the job. Invalid DOT is a PermanentError with
    Graphviz's own message (running it again would fail the same way); `what` names the
    source in it."""
    try:
        # DOT on stdin, so Graphviz's messages say <stdin> rather than a temp path.
        await ctx.run("dot", *args, input=source.encode("utf-8"))
    except ChildProcessFailed as exc:
        if exc.returncode < 0:  # killed by a signal: not the DOT's fault, may be retried
            raise
        message = exc.stderr.decode("utf-8", "replace").strip() or f"exit status {exc.returncode}"
        raise PermanentError(f"Graphviz could not render {what}: {message}") from None
