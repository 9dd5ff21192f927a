"""The attacks of issue 13, against a running `skiplock serve` (or `dev`), with their figures.

    python bench/hardening/attacks.py auth    --port P --pid PID
    python bench/hardening/attacks.py list    --port P --pid PID --key K --company C [--job-type T]
    python bench/hardening/attacks.py streams --port P --pid PID --key K --company C
                                              --other-key K2 --log SERVE_LOG
    python bench/hardening/attacks.py scrape  --port P --key K --company C --job J

`--pid` is the serve process whose memory is read from /proc. `bench/RESULTS.md` ("Issue 13:
hardening") has the figures and how the serve processes were started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import time
from pathlib import Path

import httpx

MiB = 1 << 20


def memory_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no {field} for pid {pid}")


def auth(args: argparse.Namespace) -> None:
    """60 requests, each with a 5 MB Authorization header."""
    print(f"before: rss {memory_mib(args.pid):.0f} MiB")
    started, answers = time.monotonic(), dict[str, int]()
    for n in range(60):
        credential = b"sk_" + b"%05d" % n + b"x" * (5 * MiB)
        head = b"GET /whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + credential
        with socket.create_connection(("127.0.0.1", args.port), timeout=30) as sock:
            with contextlib.suppress(OSError):  # refused mid-send: read what was said
                sock.sendall(head + b"\r\n\r\n")
            try:
                status = sock.recv(200).split(b"\r\n", 1)[0].decode() or "(closed)"
            except OSError as exc:
                status = type(exc).__name__
        answers[status] = answers.get(status, 0) + 1
    time.sleep(1)
    print(
        f"after 60 requests in {time.monotonic() - started:.1f} s: rss "
        f"{memory_mib(args.pid):.0f} MiB, peak {memory_mib(args.pid, 'VmHWM'):.0f} MiB; {answers}"
    )


async def list_pages(args: argparse.Namespace) -> None:
    """8 concurrent ?limit=200, and a /healthz probe meanwhile (the event loop's stall)."""
    headers = {"Authorization": f"Bearer {args.key}"}
    url = f"/companies/{args.company}/content-jobs"
    params = {"limit": 200, "jobType": args.job_type}
    base = f"http://127.0.0.1:{args.port}"
    async with httpx.AsyncClient(base_url=base, timeout=300) as client:
        peak, stalls, done = [memory_mib(args.pid)], [0.0], asyncio.Event()

        async def sample() -> None:
            while not done.is_set():
                peak.append(memory_mib(args.pid))
                await asyncio.sleep(0.05)

        async def probe() -> None:
            while not done.is_set():
                started = time.monotonic()
                await client.get("/healthz")
                stalls.append(time.monotonic() - started)
                await asyncio.sleep(0.05)

        async def one() -> tuple[float, int, int]:
            started = time.monotonic()
            answer = await client.get(url, params=params, headers=headers)
            return time.monotonic() - started, len(answer.content), len(answer.json()["items"])

        watchers = [asyncio.create_task(sample()), asyncio.create_task(probe())]
        started = time.monotonic()
        results = await asyncio.gather(*(one() for _ in range(8)))
        total = time.monotonic() - started
        done.set()
        await asyncio.gather(*watchers)
    for seconds, size, items in results:
        print(f"  {seconds:.2f} s, {size / 1e6:.1f} MB, {items} items")
    print(
        f"8 concurrent ?limit=200: {total:.1f} s; serve RSS peak {max(peak):.0f} MiB; "
        f"worst /healthz meanwhile {max(stalls):.2f} s"
    )


def streams(args: argparse.Namespace) -> None:
    """One company opens streams until refused; then another company asks /whoami."""

    def request(path: str, key: str, timeout: float) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", args.port), timeout=timeout)
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
        )
        return sock

    log_start = Path(args.log).stat().st_size
    opened, refused, fails = [], dict[str, int](), 0
    for _ in range(args.max):
        try:
            sock = request(f"/companies/{args.company}/events", args.key, 2.0)
            head = sock.recv(4096).split(b"\r\n", 1)[0].decode()
        except OSError as exc:
            head = type(exc).__name__
        if head.endswith("200 OK"):
            opened.append(sock)
            continue
        refused[head] = refused.get(head, 0) + 1
        fails += 1
        if fails == 5:
            break
    print(f"company A: {len(opened)} streams, then {refused}; rss {memory_mib(args.pid):.0f} MiB")
    started = time.monotonic()
    try:
        answer = request("/whoami", args.other_key, 10).recv(4096).split(b"\r\n", 1)[0].decode()
    except OSError as exc:
        answer = type(exc).__name__
    print(f"company B GET /whoami: {answer or '(closed)'} after {time.monotonic() - started:.2f} s")
    time.sleep(10)
    logged = (Path(args.log).stat().st_size - log_start) / 1e6
    print(f"serve logged {logged:.2f} MB meanwhile (and 10 s more)")
    for sock in opened:
        sock.close()


async def scrape(args: argparse.Namespace) -> None:
    """30 anonymous /metrics scrapers for 10 s; an authenticated GET meanwhile."""
    base = f"http://127.0.0.1:{args.port}"
    limits = httpx.Limits(max_connections=40)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        for scrapers, seconds in ((0, 5.0), (30, 10.0)):
            stop, done, took = time.monotonic() + seconds, [0], list[float]()

            async def scraper(stop: float = stop, done: list[int] = done) -> None:
                while time.monotonic() < stop:
                    await client.get("/metrics")
                    done[0] += 1

            async def reader(stop: float = stop, took: list[float] = took) -> None:
                headers = {"Authorization": f"Bearer {args.key}"}
                while time.monotonic() < stop:
                    started = time.monotonic()
                    await client.get(
                        f"/companies/{args.company}/content-jobs/{args.job}", headers=headers
                    )
                    took.append(time.monotonic() - started)
                    await asyncio.sleep(0.05)

            await asyncio.gather(reader(), *(scraper() for _ in range(scrapers)))
            q = statistics.quantiles(took, n=100)
            print(
                f"{scrapers} scrapers x {seconds:.0f} s: {done[0]} scrapes; authenticated GET "
                f"p50 {q[49] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms ({len(took)} requests)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="attack", required=True)
    for name in ("auth", "list", "streams", "scrape"):
        command = commands.add_parser(name)
        command.add_argument("--port", type=int, required=True)
        command.add_argument("--pid", type=int, default=0)
        command.add_argument("--key", default="")
        command.add_argument("--company", default="")
    commands.choices["list"].add_argument("--job-type", default="bulk")
    commands.choices["streams"].add_argument("--other-key", required=True)
    commands.choices["streams"].add_argument("--log", required=True)
    commands.choices["streams"].add_argument("--max", type=int, default=600)
    commands.choices["scrape"].add_argument("--job", required=True)
    args = parser.parse_args()
    if args.attack == "auth":
        auth(args)
    elif args.attack == "list":
        asyncio.run(list_pages(args))
    elif args.attack == "streams":
        streams(args)
    else:
        asyncio.run(scrape(args))


if __name__ == "__main__":
    main()
