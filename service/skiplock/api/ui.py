"""GET /ui: the dashboard, a static page with its own script and stylesheet (SPEC §4).

The three files live in `api/ui/` inside the package: hand-written, no build step, nothing
from a CDN, so the dashboard works offline. They are read once, on first use. The page
needs no key: it asks for one and keeps it in the tab's sessionStorage, and talks to the
API like any other client (stream tokens for EventSource and <img>, which cannot send
headers).

The page's Content-Security-Policy lets it run only its own script and style, and load
images, video and connections from its own origin only (the API's asset `/content` and
SSE routes): a job's input or a rendered SVG can never run script on this origin. The
page builds its DOM with textContent, never innerHTML, and `form-action 'none'` keeps a
form that the script failed to take over from sending the key anywhere in a URL.
"""

from __future__ import annotations

import functools
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

CONTENT_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "automation.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
PAGE_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "media-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
# no-cache: revalidate every time, so an upgraded server never runs with a stale script.
# no-referrer: asset and stream URLs carry ?token=, which must not leak to anyone.
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
}


@functools.cache
def read(name: str) -> bytes:
    """One of the dashboard's files, as shipped in the package."""
    return resources.files("skiplock.api").joinpath("ui", name).read_bytes()


def _serve(name: str, extra: dict[str, str] | None = None) -> Response:
    return Response(
        read(name), media_type=CONTENT_TYPES[name], headers={**HEADERS, **(extra or {})}
    )


async def dashboard(request: Request) -> Response:
    return _serve("index.html", {"Content-Security-Policy": PAGE_POLICY})


async def script(request: Request) -> Response:
    return _serve("app.js")


async def automation(request: Request) -> Response:
    return _serve("automation.js")


async def stylesheet(request: Request) -> Response:
    return _serve("app.css")


def routes() -> list[Route]:
    return [
        Route("/ui", dashboard, methods=["GET"]),
        Route("/ui/app.js", script, methods=["GET"]),
        Route("/ui/automation.js", automation, methods=["GET"]),
        Route("/ui/app.css", stylesheet, methods=["GET"]),
    ]
