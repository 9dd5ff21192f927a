"""`skiplock serve` as a real process under attack (issue 13): huge and malformed credentials,
a low open-file limit with one tenant opening streams, and idle connections past the limit."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from cli_helpers import REPO
from processes import free_port, peak_rss_mib
from skiplock import keys
from skiplock.api.auth import _TtlCache
from worker_harness import wait_for

TESTS = Path(__file__).resolve().parent
MiB = 1 << 20


@dataclass
class Serve:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def peak_rss_mib(self) -> float:
        return peak_rss_mib(self.process.pid)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_serve(
    database_url: str,
    tmp_path: Path,
    *,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> Serve:
    port = free_port()
    full_env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SKIPLOCK_STORAGE_DIR": str(tmp_path / "storage"),
        "PYTHONPATH": str(TESTS),
        **(env or {}),
    }
    log_path = tmp_path / f"serve-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "skiplock", "serve", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=REPO,
            preexec_fn=preexec_fn,
        )
    serve = Serve(process, port, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{serve.base}/healthz", timeout=1).status_code == 200:
                return serve
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError(serve.log())


@pytest.fixture
def stop_later() -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for serve in started:
        serve.process.send_signal(signal.SIGTERM)
        try:
            serve.process.wait(15)
        except subprocess.TimeoutExpired:
            serve.process.kill()
            serve.process.wait()


def company(database_url: str, name: str) -> keys.NewKey:
    import asyncio

    async def make() -> keys.NewKey:
        conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
        async with conn:
            return await keys.create_company(conn, name)

    return asyncio.run(make())


def raw_request(port: int, head: bytes, timeout: float = 10) -> bytes:
    """Send a request head on a new connection; the first bytes of the answer (b"" when the
    server closed the connection without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head)  # refused while we were still sending: read what it said
        try:
            return sock.recv(4096)
        except ConnectionResetError:
            return b""


# -- item 2: credentials and request heads -------------------------------------------------


def test_60_requests_with_a_5_mb_authorization_header_leave_serve_small(
    database_url: str, tmp_path: Path, stop_later: list[Serve]
) -> None:
    """Each such header was parsed whole, then cached as a key: serve went from 48 to 454 MiB
    and stayed there. Now the request is refused (431) once its head passes 32 KiB."""
    serve = start_serve(database_url, tmp_path)
    stop_later.append(serve)
    before = serve.peak_rss_mib()
    answers = set()
    for n in range(60):
        credential = b"sk_" + b"%05d" % n + b"x" * (5 * MiB)
        head = b"GET /whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + credential
        answer = raw_request(serve.port, head + b"\r\n\r\n")
        answers.add(answer.split(b"\r\n", 1)[0])
    grown = serve.peak_rss_mib() - before
    print(f"\nserve peak RSS {before:.0f} MiB -> {before + grown:.0f} MiB after 60 x 5 MB headers")
    assert answers <= {b"HTTP/1.1 431 Request Header Fields Too Large", b""}, answers
    assert b"HTTP/1.1 431 Request Header Fields Too Large" in answers
    assert grown < 60, f"serve grew by {grown:.0f} MiB"
    assert httpx.get(f"{serve.base}/healthz", timeout=5).status_code == 200


def test_a_431_says_why_in_the_error_shape(
    database_url: str, tmp_path: Path, stop_later: list[Serve]
) -> None:
    serve = start_serve(database_url, tmp_path, env={"SKIPLOCK_HTTP_MAX_HEADER_BYTES": "4096"})
    stop_later.append(serve)
    answer = httpx.get(f"{serve.base}/healthz", headers={"X-Big": "y" * 5000}, timeout=5)
    assert answer.status_code == 431
    assert answer.json() == {
        "error": {
            "code": "headers_too_large",
            "message": "the request's headers are larger than 4096 bytes "
            "(SKIPLOCK_HTTP_MAX_HEADER_BYTES)",
        }
    }
    # Under the limit, on the same server: answered as ever.
    ok = httpx.get(f"{serve.base}/healthz", headers={"X-Big": "y" * 3000}, timeout=5)
    assert ok.status_code == 200


@pytest.mark.slow
def test_a_credential_that_cannot_be_a_key_is_refused_without_the_database(
    own_cluster: Any, tmp_path: Path, stop_later: list[Serve]
) -> None:
    """Checked by its shape before any cache or pool: with Postgres down a malformed key
    still gets its 401 at once, where a well-formed one needs the database (503)."""
    url = own_cluster.url("outage")
    serve = start_serve(url, tmp_path)
    stop_later.append(serve)
    well_formed = f"sk_{uuid.uuid4().hex}_{'a' * 43}"
    own_cluster.stop()
    try:
        for bad in ("x" * 10_000, "sk_nope", well_formed + "\n", "st_" + well_formed[3:]):
            answer = httpx.get(
                f"{serve.base}/whoami", headers={"Authorization": f"Bearer {bad.strip()}x"}
            )
            assert answer.status_code == 401, (bad[:20], answer.text)
            assert "this is not an API key" in answer.json()["error"]["message"]
        token = httpx.get(
            f"{serve.base}/companies/{uuid.uuid4()}/events", params={"token": "st_short"}
        )
        assert token.status_code == 401
        assert "this is not a stream token" in token.json()["error"]["message"]
        unknown = httpx.get(
            f"{serve.base}/whoami", headers={"Authorization": f"Bearer {well_formed}"}, timeout=30
        )
        assert unknown.status_code == 503
    finally:
        own_cluster.start()


def test_the_auth_cache_drops_expired_entries_and_stays_bounded() -> None:
    now = [0.0]
    cache = _TtlCache(5.0, max_entries=3, clock=lambda: now[0])
    for n in range(5):
        cache.put(bytes([n]), None)
    assert len(cache) == 3  # the oldest went first
    assert cache.get(bytes([4])) == (True, None)
    now[0] = 6.0  # every entry has expired
    cache.put(b"new", None)
    assert len(cache) == 1 and cache.get(b"new") == (True, None)


# -- item 7: open files, connections, streams ----------------------------------------------


def _nofile(soft: int, hard: int) -> Callable[[], None]:
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _open_files_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-file limit")


def test_serve_raises_its_soft_open_file_limit_to_the_hard_one(
    database_url: str, tmp_path: Path, stop_later: list[Serve]
) -> None:
    serve = start_serve(database_url, tmp_path, preexec_fn=_nofile(256, 4096))
    stop_later.append(serve)
    assert _open_files_limit(serve.process.pid) == 4096


def _open_stream(port: int, path: str, credential: str) -> tuple[bytes, socket.socket]:
    """The answer's head (and body, when it is not a stream), and the open socket."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {credential}\r\n\r\n"
    sock.sendall(request.encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(4096)
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = next((int(h.split(b":")[1]) for h in lines if h.startswith(b"content-length:")), 0)
    while len(body) < length:
        body += sock.recv(4096)
    return head + b"\r\n\r\n" + body, sock


def test_under_a_low_open_file_limit_one_company_cannot_take_every_connection(
    database_url: str, tmp_path: Path, stop_later: list[Serve]
) -> None:
    """ulimit -n 256: one key used to open 242 streams, after which no one's request got
    through. Now its streams stop at its share (429, Retry-After), and another company's
    requests and streams are still answered."""
    greedy, other = company(database_url, "greedy"), company(database_url, "other")
    serve = start_serve(database_url, tmp_path, preexec_fn=_nofile(256, 256))
    stop_later.append(serve)
    opened: list[socket.socket] = []
    refusal = b""
    try:
        for _ in range(300):
            answer, sock = _open_stream(
                serve.port, f"/companies/{greedy.company_id}/events", greedy.api_key
            )
            if not answer.startswith(b"HTTP/1.1 200"):
                refusal = answer
                sock.close()
                break
            opened.append(sock)
        assert refusal.startswith(b"HTTP/1.1 429"), (len(opened), refusal[:300])
        assert b"retry-after: 5" in refusal.lower()
        assert b"SKIPLOCK_SSE_MAX_STREAMS_PER_COMPANY" in refusal
        headers = {"Authorization": f"Bearer {other.api_key}"}
        whoami = httpx.get(f"{serve.base}/whoami", headers=headers, timeout=10)
        assert whoami.status_code == 200
        answer, sock = _open_stream(
            serve.port, f"/companies/{other.company_id}/events", other.api_key
        )
        sock.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    finally:
        for sock in opened:
            sock.close()
    print(f"\nunder ulimit -n 256 one company got {len(opened)} streams, then 429")


def test_idle_connections_past_the_file_limit_log_one_line_not_one_per_accept(
    database_url: str, tmp_path: Path, stop_later: list[Serve]
) -> None:
    """Out of descriptors, asyncio logged a traceback for every accept it retried: 88 MB in
    30 s. Now each distinct asyncio error is logged at most once every 10 s."""
    serve = start_serve(database_url, tmp_path, preexec_fn=_nofile(128, 128))
    stop_later.append(serve)
    idle = []
    try:
        for _ in range(200):  # connections that never send a request: accepted, held
            idle.append(socket.create_connection(("127.0.0.1", serve.port), timeout=5))
        wait_for(lambda: "out of system resource" in serve.log(), timeout=10)
        time.sleep(3)  # let it retry accepts for a while (it retries every 1 s per socket)
        log = serve.log()
    finally:
        for sock in idle:
            sock.close()
    assert log.count("socket.accept() out of system resource") == 1, log[-3000:]
    # Once the idle connections are gone, the server answers again.
    wait_for(lambda: httpx.get(f"{serve.base}/healthz", timeout=10).status_code == 200, 30)


async def test_a_connection_must_send_its_request_head_in_time_but_a_stream_may_last(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection that never sends a request held a file descriptor forever; one that did
    (an SSE stream, say) is never cut by the head timeout."""
    import asyncio

    from api_harness import running_api
    from skiplock.api import protocol
    from sse_client import open_stream, until

    monkeypatch.setattr(protocol, "HEAD_TIMEOUT_SECONDS", 0.3)
    async with running_api(database_url, tmp_path / "storage") as api:
        port = int(api.base_url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        url = f"{api.acme.prefix}/events"
        async with open_stream(api.client, url, headers=api.acme.headers) as stream:
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
            writer.close()
            await asyncio.sleep(1.0)  # over three head timeouts: the stream is still open
            await api.submit("noop")
            await until(lambda: len(stream.events()) == 1)
            assert not stream.ended.is_set()


# -- item 6: list pages bounded by bytes ---------------------------------------------------


def test_a_list_page_of_large_inputs_is_cut_by_bytes_and_the_cursor_walks_them_all(
    database_url: str, tmp_path: Path, stop_later: list[Serve]
) -> None:
    """200 jobs with 1 MiB inputs: `?limit=200` was one 210 MB body built in memory (8 such
    requests at once took serve to 2.1 GB). Now a page ends near 4 MiB with nextCursor set."""
    tenant = company(database_url, "big")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO skiplock.content_jobs (company_id, job_type, input, progress, created_at) "
            "SELECT %s, 'noop', jsonb_build_object('blob', repeat(md5(g::text), 32768), 'n', g), "
            "CASE WHEN g %% 2 = 0 THEN %s::jsonb END, "
            "now() - make_interval(secs => g) FROM generate_series(1, 200) AS g",
            (tenant.company_id, '{"fraction": 0.5, "message": "ünïcode"}'),
        )
    serve = start_serve(database_url, tmp_path)
    stop_later.append(serve)
    headers = {"Authorization": f"Bearer {tenant.api_key}"}
    url = f"{serve.base}/companies/{tenant.company_id}/content-jobs"
    before = serve.peak_rss_mib()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda _: httpx.get(url, params={"limit": 200}, headers=headers, timeout=60),
                range(8),
            )
        )
    grown = serve.peak_rss_mib() - before
    print(f"\n8 concurrent ?limit=200 over 1 MiB inputs: serve's peak grew {grown:.0f} MiB")
    first = answers[0].json()
    assert all(a.status_code == 200 and a.json() == first for a in answers)
    assert 1 <= len(first["items"]) < 10 and first["nextCursor"] is not None
    assert len(answers[0].content) <= 5 * MiB
    assert grown < 300, f"serve grew by {grown:.0f} MiB"
    # The cursor walks every job once, newest first; each item reads as GET shows it.
    seen, cursor = [item["input"]["n"] for item in first["items"]], first["nextCursor"]
    while cursor is not None:
        page = httpx.get(url, params={"limit": 200, "cursor": cursor}, headers=headers).json()
        seen += [item["input"]["n"] for item in page["items"]]
        cursor = page["nextCursor"]
    assert seen == list(range(1, 201))
    one = first["items"][1]
    assert one == httpx.get(f"{url}/{one['id']}", headers=headers).json()
    assert one["progress"] == {"fraction": 0.5, "message": "ünïcode"}


# -- item 8: /metrics ------------------------------------------------------------------------


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in the scrape")


def test_metrics_scrapes_share_one_reading_on_a_connection_of_their_own(
    database_url: str, tmp_path: Path, stop_later: list[Serve]
) -> None:
    """Each scrape ran the gauges' query on the API's pool: 30 scrapers held its connections
    and slowed everyone. Now one reading at a time runs on its own connection, at most every
    5 s, and every scrape meanwhile is served from it."""
    tenant = company(database_url, "watched")
    serve = start_serve(database_url, tmp_path)
    stop_later.append(serve)
    stop = time.monotonic() + 4
    waiting: list[list[str]] = []

    def scrape_until_stop() -> None:
        while time.monotonic() < stop:
            assert httpx.get(f"{serve.base}/metrics", timeout=30).status_code == 200

    with (
        psycopg.connect(database_url) as locker,
        psycopg.connect(database_url, autocommit=True) as watcher,
    ):
        # The gauges' query reads content_jobs: while this lock is held, every reading waits.
        locker.execute("LOCK TABLE skiplock.content_jobs IN ACCESS EXCLUSIVE MODE")
        with concurrent.futures.ThreadPoolExecutor(30) as pool:
            scrapers = [pool.submit(scrape_until_stop) for _ in range(30)]
            while time.monotonic() < stop:
                rows = watcher.execute(
                    "SELECT application_name FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                ).fetchall()
                waiting.append([name for (name,) in rows])
                time.sleep(0.02)
            # Meanwhile a client's first request (its key not cached yet) is answered.
            headers = {"Authorization": f"Bearer {tenant.api_key}"}
            assert httpx.get(f"{serve.base}/whoami", headers=headers).status_code == 200
            for scraper in scrapers:
                scraper.result()
        locker.rollback()
    assert max(len(names) for names in waiting) == 1, max(waiting, key=len)
    assert {name for names in waiting for name in names} == {"skiplock metrics"}

    started = time.monotonic()
    first = httpx.get(f"{serve.base}/metrics").text
    for _ in range(20):
        last = httpx.get(f"{serve.base}/metrics").text
    elapsed = time.monotonic() - started
    readings = _metric(last, "skiplock_metrics_snapshots_total") - _metric(
        first, "skiplock_metrics_snapshots_total"
    )
    assert readings <= 1 + elapsed // 5, (readings, elapsed)
    assert _metric(last, "skiplock_metrics_snapshot_age_seconds") < 5 + elapsed
