"""HTTP API figures: submit rate, SSE delivery latency with 1,000 clients, RSS, connections.

    .venv/bin/python bench/api/run.py [--quick] [--repeat 3] [--seconds 8] [--client raw]

Starts a throwaway Postgres with default settings (fsync and synchronous_commit on) unless
DATABASE_URL names a server whose role may create databases. Each measurement gets a fresh
database and its own `python -m skiplock serve` process (SKIPLOCK_LOG_LEVEL=warning), ready
when GET /healthz answers 200. No worker runs: submitted jobs just queue.

- submit: 1 and 8 concurrent clients, each on its own keep-alive connection, POST
  `diagram` jobs back to back for --seconds after --warmup seconds; jobs/s = 202 answers
  completed in the window / its length; latency = request written -> response read. The
  default client is a minimal HTTP/1.1 client on asyncio streams (--client httpx uses one
  httpx.AsyncClient per simulated client instead). CPU of the load generator, serve,
  Postgres (the postmaster and its backends) and the rest is read from /proc over the
  window.
- SSE: 1,000 streams on GET /companies/{id}/events (100 companies x 10), raw asyncio
  streams; then a separate process commits enqueue_content_job() at --rate jobs/s round
  robin over the companies for --sse-seconds, noting time.time() when each commit returns.
  Each stream notes time.time() when a content_job.queued frame arrives; latency = that -
  the commit. Also the serve process's VmRSS/VmHWM and its database connections. Then the
  same with 100 streams (100 companies x 1), to see what the fan-out and the load
  generator add. Per job it also reports the first stream's latency and the spread from
  the first stream to the last.
- --prefill N puts N events (another company's queued jobs) in the log before each
  measurement, then ANALYZE: the API's notifier reads the whole log's tail, so its cost
  can depend on the log's size.
- --profile DIR records py-spy stacks of serve over each window (collapsed, one file per
  measurement); py-spy's own CPU then skews the figures.

The machine this was written for has 2 cores, shared by Postgres, serve and this script.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg.types.json import Jsonb

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "service"))
sys.path.insert(0, str(REPO / "bench"))

from cluster import free_port, fresh_database, server  # noqa: E402

from skiplock import keys  # noqa: E402

HOST = "127.0.0.1"
SUBMIT_BODY = json.dumps({"jobType": "diagram", "input": {"source": "digraph { a -> b }"}})
ENQUEUER = "skiplock-bench-enqueuer"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROFILE_DIR = ""  # --profile: where py-spy writes serve's stacks (it costs CPU itself)


# -- Postgres, databases, companies ----------------------------------------------------------


def one(conn: psycopg.Connection[Any], statement: str, params: Any = None) -> tuple[Any, ...]:
    """The one row a statement returns."""
    row = conn.execute(statement, params, prepare=True).fetchone()
    if row is None:
        raise RuntimeError(f"no row from {statement}")
    return tuple(row)


def make_companies(url: str, count: int) -> list[keys.NewKey]:
    async def create() -> list[keys.NewKey]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return [await keys.create_company(conn, f"bench-{i}") for i in range(count)]

    return asyncio.run(create())


def prefill(url: str, events: int) -> None:
    """History: `events` queued jobs of another company (one event each), then ANALYZE."""
    if not events:
        return
    with psycopg.connect(url, autocommit=True) as conn:
        [company_id] = one(
            conn, "INSERT INTO skiplock.companies (name) VALUES ('history') RETURNING id"
        )
        conn.execute(
            "INSERT INTO skiplock.content_jobs (id, company_id, job_type, input) "
            "SELECT skiplock.new_job_id(), %s, 'diagram', '{\"source\": \"digraph { a }\"}' "
            "FROM generate_series(1, %s)",
            (company_id, events),
        )
        conn.execute("ANALYZE")


# -- the serve process and CPU accounting ----------------------------------------------------


class Serve:
    def __init__(self, url: str, tmp: Path) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "SKIPLOCK_LOG_LEVEL": "warning",
            "SKIPLOCK_STORAGE_DIR": str(tmp / "storage"),
        }
        self.proc = subprocess.Popen(  # noqa: S603  (our own CLI, fixed arguments)
            [sys.executable, "-m", "skiplock", "serve", "--port", str(self.port)],
            env=env,
        )
        self.postmaster = postmaster_pid(url)
        deadline = time.monotonic() + 30
        while self.get("/healthz")[0] != 200:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("skiplock serve did not become healthy")
            time.sleep(0.05)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except OSError:
            return 0, ""

    def metric(self, name: str) -> float:
        for line in self.get("/metrics")[1].splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return float("nan")

    def status_mib(self, field: str) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def profile(self, seconds: float, name: str) -> subprocess.Popen[bytes] | None:
        """py-spy (collapsed stacks) on serve for `seconds`, when --profile DIR is given."""
        if not PROFILE_DIR:
            return None
        output = Path(PROFILE_DIR) / f"{name}.txt"
        return subprocess.Popen(  # noqa: S603  (py-spy from the venv, fixed arguments)
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(self.proc.pid),
                "--duration",
                str(max(1, int(seconds))),
                "--rate",
                "100",
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine, all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / CLK_TCK


def postmaster_pid(url: str) -> int | None:
    """The local postmaster behind url (the parent of a backend), or None if not local."""
    with psycopg.connect(url) as conn:  # read /proc while the backend is alive
        [backend] = one(conn, "SELECT pg_backend_pid()")
        try:
            return int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            return None


def postgres_cpu(postmaster: int) -> tuple[float, dict[int, float]]:
    """The postmaster's own and reaped children's CPU seconds, and each live child's."""
    fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    own = sum(int(v) for v in fields[11:15]) / CLK_TCK  # utime, stime, cutime, cstime
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            children[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return own, children


class CpuMeter:
    """Cores used over a window: this process, serve, Postgres, everything else."""

    def __init__(self, serve_pid: int, postmaster: int | None) -> None:
        self.serve_pid = serve_pid
        self.postmaster = postmaster

    def _read(self) -> tuple[tuple[float, ...], dict[int, float]]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        pg_own, pg_children = postgres_cpu(self.postmaster) if self.postmaster else (0.0, {})
        return (
            time.monotonic(),
            usage.ru_utime + usage.ru_stime,
            proc_cpu_seconds(self.serve_pid),
            machine_cpu_seconds(),
            pg_own,
        ), pg_children

    def start(self) -> None:
        self.begin = self._read()

    def stop(self) -> dict[str, float]:
        (begin, children_before), (end, children_after) = self.begin, self._read()
        wall, client, serve, machine, pg = (b - a for a, b in zip(begin, end, strict=True))
        # A backend that ended in the window is in the postmaster's cutime with all its time.
        pg += sum(t - children_before.get(pid, 0.0) for pid, t in children_after.items())
        pg -= sum(t for pid, t in children_before.items() if pid not in children_after)
        if not self.postmaster:
            pg = float("nan")
        return {
            "client": client / wall,
            "serve": serve / wall,
            "postgres": pg / wall,
            "other": max(0.0, machine - client - serve - (pg if pg == pg else 0.0)) / wall,
            "machine": machine / wall,
        }


def cpu_text(cpu: dict[str, float]) -> str:
    return (
        f"load generator {cpu['client']:.2f}, serve {cpu['serve']:.2f}, "
        f"Postgres {cpu['postgres']:.2f}, other {cpu['other']:.2f} "
        f"(machine {cpu['machine']:.2f} of {os.cpu_count()} cores)"
    )


# -- submit ----------------------------------------------------------------------------------


class Client(Protocol):
    async def submit(self) -> int: ...
    async def close(self) -> None: ...


class RawClient:
    """One keep-alive HTTP/1.1 connection; just enough protocol for POST and a JSON answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes):
        self.reader, self.writer, self.request = reader, writer, request

    @classmethod
    async def open(cls, port: int, path: str, api_key: str) -> RawClient:
        reader, writer = await asyncio.open_connection(HOST, port)
        body = SUBMIT_BODY.encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Authorization: Bearer {api_key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return cls(reader, writer, head.encode() + body)

    async def submit(self) -> int:
        self.writer.write(self.request)
        status = int((await self.reader.readline()).split(b" ", 2)[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        self.writer.close()


class HttpxClient:
    def __init__(self, port: int, path: str, api_key: str) -> None:
        import httpx

        self.path = path
        self.client = httpx.AsyncClient(
            base_url=f"http://{HOST}:{port}",
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        )

    async def submit(self) -> int:
        response = await self.client.post(self.path, content=SUBMIT_BODY)
        return response.status_code

    async def close(self) -> None:
        await self.client.aclose()


async def submit_load(
    serve: Serve, key: keys.NewKey, clients: int, seconds: float, warmup: float, kind: str
) -> dict[str, Any]:
    path = f"/companies/{key.company_id}/content-jobs"
    opened: list[Client] = []
    for _ in range(clients):
        if kind == "raw":
            opened.append(await RawClient.open(serve.port, path, key.api_key))
        else:
            opened.append(HttpxClient(serve.port, path, key.api_key))
    meter = CpuMeter(serve.proc.pid, serve.postmaster)
    begin = time.perf_counter() + warmup
    end = begin + seconds
    latencies: list[float] = []
    statuses: Counter[int] = Counter()

    async def loop(client: Client) -> None:
        while (sent := time.perf_counter()) < end:
            status = await client.submit()
            done = time.perf_counter()
            statuses[status] += 1
            if sent >= begin and done <= end:
                latencies.append(done - sent)

    async def window() -> dict[str, float]:
        await asyncio.sleep(begin - time.perf_counter())
        meter.start()
        spy = serve.profile(seconds, f"submit-{clients}-{kind}-{uuid.uuid4().hex[:4]}")
        await asyncio.sleep(end - time.perf_counter())
        cpu = meter.stop()
        if spy:
            await asyncio.to_thread(spy.wait)
        return cpu

    cpu, *_ = await asyncio.gather(window(), *(loop(c) for c in opened))
    for client in opened:
        await client.close()
    latencies.sort()
    return {
        "jobs_per_s": len(latencies) / seconds,
        "p50_ms": pct(latencies, 50) * 1000,
        "p99_ms": pct(latencies, 99) * 1000,
        "statuses": statuses,
        "cpu": cpu,
    }


def submit_run(server_url: str, clients: int, args: Any) -> dict[str, Any]:
    seconds, warmup, kind = args.seconds, args.warmup, args.client
    with fresh_database(server_url) as url, tempfile.TemporaryDirectory() as tmp:
        [key] = make_companies(url, 1)
        prefill(url, args.prefill)
        serve = Serve(url, Path(tmp))
        try:
            result = asyncio.run(submit_load(serve, key, clients, seconds, warmup, kind))
        finally:
            serve.stop()
        with psycopg.connect(url) as conn:
            [stored] = one(
                conn,
                "SELECT count(*) FROM skiplock.content_jobs WHERE company_id = %s",
                (key.company_id,),
            )
    if stored != result["statuses"][202] or set(result["statuses"]) != {202}:
        raise RuntimeError(f"answers {dict(result['statuses'])} but {stored} jobs stored")
    return result


# -- SSE -------------------------------------------------------------------------------------


@dataclass(eq=False)
class Stream:
    company_id: str
    frames: list[tuple[float, bytes]] = field(default_factory=list)
    ended: bool = False


async def open_stream(port: int, key: keys.NewKey) -> tuple[Stream, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(
        (
            f"GET /companies/{key.company_id}/events HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Authorization: Bearer {key.api_key}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
    )
    status = await reader.readline()
    headers = []
    while (line := await reader.readline()) not in (b"\r\n", b""):
        headers.append(line.lower())
    if b" 200 " not in status or b"transfer-encoding: chunked\r\n" not in headers:
        raise RuntimeError(f"stream answered {status!r} {headers!r}")
    stream = Stream(str(key.company_id))
    asyncio.get_running_loop().create_task(read_stream(reader, stream))
    return stream, writer


async def read_stream(reader: asyncio.StreamReader, stream: Stream) -> None:
    """Read the chunked SSE body; note the arrival time of each content_job.queued frame."""
    buffer = b""
    try:
        while size_line := await reader.readline():
            size = int(size_line.strip(), 16)
            if size == 0:
                break
            chunk = await reader.readexactly(size + 2)
            now = time.time()
            buffer += chunk[:-2]
            while (end := buffer.find(b"\n\n")) >= 0:
                frame, buffer = buffer[:end], buffer[end + 2 :]
                if b"\nevent: content_job.queued\n" in frame:
                    stream.frames.append((now, frame))
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    stream.ended = True


def enqueue_paced(url: str, companies: list[str], rate: float, seconds: float, out: str) -> None:
    """In its own process: commit jobs at `rate`/s round robin; write `job company t` lines."""
    count = round(rate * seconds)
    statement = "SELECT skiplock.enqueue_content_job(%s, 'diagram', %s)"
    payload = Jsonb({"source": "digraph{a}"})
    lines = []
    with psycopg.connect(url, autocommit=True, application_name=ENQUEUER) as conn:
        start = time.monotonic()
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            company = companies[i % len(companies)]
            sent = time.time()
            [job_id] = one(conn, statement, (company, payload))
            lines.append(f"{job_id} {company} {time.time()!r} {sent!r}\n")
    Path(out).write_text("".join(lines))


def serve_connections(url: str) -> tuple[int, str]:
    """Client connections to the database other than this script's and the enqueuer's."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = one(
            conn,
            "SELECT count(*), string_agg(DISTINCT application_name, ',') FROM pg_stat_activity "
            "WHERE datname = current_database() AND backend_type = 'client backend' "
            "AND pid <> pg_backend_pid() AND application_name <> %s",
            (ENQUEUER,),
        )
    return int(row[0]), row[1] or ""


async def sse_load(
    url: str, serve: Serve, company_keys: list[keys.NewKey], per_company: int, args: Any
) -> dict[str, Any]:
    opening = asyncio.Semaphore(50)

    async def open_one(key: keys.NewKey) -> tuple[Stream, asyncio.StreamWriter]:
        async with opening:
            return await open_stream(serve.port, key)

    started = time.monotonic()
    opened = await asyncio.gather(*(open_one(k) for k in company_keys for _ in range(per_company)))
    connect_s = time.monotonic() - started
    streams = [s for s, _ in opened]
    while await asyncio.to_thread(serve.metric, "skiplock_sse_clients") < len(streams):
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    connections_idle = await asyncio.to_thread(serve_connections, url)
    rss_connected = serve.status_mib("VmRSS")

    meter = CpuMeter(serve.proc.pid, serve.postmaster)
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        enqueuer = multiprocessing.get_context("spawn").Process(
            target=enqueue_paced,
            args=(url, [str(k.company_id) for k in company_keys], args.rate, args.sse_seconds),
            kwargs={"out": out.name},
        )
        enqueuer.start()
        await asyncio.sleep(1.0)  # the child is importing; measure while it commits
        meter.start()
        spy = serve.profile(args.sse_seconds - 1.5, f"sse-{len(streams)}-{uuid.uuid4().hex[:4]}")
        await asyncio.sleep(args.sse_seconds / 2)
        connections_busy = await asyncio.to_thread(serve_connections, url)
        await asyncio.to_thread(enqueuer.join)
        cpu = meter.stop()
        if spy:
            await asyncio.to_thread(spy.wait)
        committed: dict[str, tuple[str, float]] = {}
        round_trips = []
        for line in Path(out.name).read_text().splitlines():
            job_id, company, done, sent = line.split()
            committed[job_id] = (company, float(done))
            round_trips.append(float(done) - float(sent))
    expected = Counter(company for company, _ in committed.values())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        len(s.frames) < expected[s.company_id] for s in streams
    ):
        await asyncio.sleep(0.05)
    rss, hwm = serve.status_mib("VmRSS"), serve.status_mib("VmHWM")
    for _, writer in opened:
        writer.close()

    latencies = []
    by_job: dict[str, list[float]] = {}
    short = 0
    for stream in streams:
        got = set()
        for at, frame in stream.frames:
            job_id = json.loads(frame.split(b"\ndata: ", 1)[1])["jobId"]
            got.add(job_id)
            latencies.append(at - committed[job_id][1])
            by_job.setdefault(job_id, []).append(at)
        if got != {j for j, (c, _) in committed.items() if c == stream.company_id}:
            short += 1
    latencies.sort()
    # The first stream of a job to get it (read + first write), and first -> last (fan-out).
    firsts = sorted(min(times) - committed[job][1] for job, times in by_job.items())
    spreads = sorted(max(times) - min(times) for times in by_job.values())
    return {
        "clients": len(streams),
        "connect_s": connect_s,
        "jobs": len(committed),
        "pairs": len(latencies),
        "expected_pairs": sum(expected[s.company_id] for s in streams),
        "short_clients": short,
        "ended_early": sum(s.ended for s in streams),
        "enqueue_ms": statistics.median(round_trips) * 1000,
        "min_ms": latencies[0] * 1000,
        "p50_ms": pct(latencies, 50) * 1000,
        "p90_ms": pct(latencies, 90) * 1000,
        "p99_ms": pct(latencies, 99) * 1000,
        "max_ms": latencies[-1] * 1000,
        "first_p50_ms": pct(firsts, 50) * 1000,
        "spread_p50_ms": pct(spreads, 50) * 1000,
        "spread_p99_ms": pct(spreads, 99) * 1000,
        "rss_connected_mib": rss_connected,
        "rss_mib": rss,
        "hwm_mib": hwm,
        "db_connections_idle": connections_idle,
        "db_connections_busy": connections_busy,
        "cpu": cpu,
    }


def sse_run(server_url: str, companies: int, per_company: int, args: Any) -> dict[str, Any]:
    with fresh_database(server_url) as url, tempfile.TemporaryDirectory() as tmp:
        company_keys = make_companies(url, companies)
        prefill(url, args.prefill)
        serve = Serve(url, Path(tmp))
        try:
            rss_idle = serve.status_mib("VmRSS")
            result = asyncio.run(sse_load(url, serve, company_keys, per_company, args))
        finally:
            serve.stop()
    return {**result, "rss_idle_mib": rss_idle}


# -- reporting -------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def summary(values: list[float], digits: int = 0) -> str:
    return (
        f"{statistics.median(values):,.{digits}f} "
        f"[{min(values):,.{digits}f}-{max(values):,.{digits}f}]"
    )


def median_cpu(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {k: statistics.median(r["cpu"][k] for r in runs) for k in runs[0]["cpu"]}


def report_submit(clients: int, runs: list[dict[str, Any]]) -> None:
    print(
        f"submit, {clients} client(s): jobs/s {summary([r['jobs_per_s'] for r in runs])}; "
        f"p50 {summary([r['p50_ms'] for r in runs], 2)} ms, "
        f"p99 {summary([r['p99_ms'] for r in runs], 2)} ms; "
        f"CPU {cpu_text(median_cpu(runs))}",
        flush=True,
    )


def report_sse(runs: list[dict[str, Any]]) -> None:
    last = runs[-1]
    received = [f"{r['pairs']}/{r['expected_pairs']}" for r in runs]
    print(
        f"SSE, {last['clients']} clients: latency min {summary([r['min_ms'] for r in runs], 2)} "
        f"ms, p50 {summary([r['p50_ms'] for r in runs], 1)} "
        f"ms, p90 {summary([r['p90_ms'] for r in runs], 1)} ms, "
        f"p99 {summary([r['p99_ms'] for r in runs], 1)} ms, "
        f"max {summary([r['max_ms'] for r in runs], 1)} ms",
        flush=True,
    )
    print(
        f"  (client, event) pairs received/expected {received}, "
        f"clients missing any {[r['short_clients'] for r in runs]}, "
        f"streams ended early {[r['ended_early'] for r in runs]}",
        flush=True,
    )
    print(
        f"  serve RSS idle {statistics.median(r['rss_idle_mib'] for r in runs):.1f} MiB, "
        f"connected {statistics.median(r['rss_connected_mib'] for r in runs):.1f} MiB, "
        f"after {statistics.median(r['rss_mib'] for r in runs):.1f} MiB, "
        f"peak {statistics.median(r['hwm_mib'] for r in runs):.1f} MiB; "
        f"serve DB connections idle/during {[r['db_connections_idle'] for r in runs]} / "
        f"{[r['db_connections_busy'] for r in runs]}",
        flush=True,
    )
    print(
        f"  per job: first stream p50 {summary([r['first_p50_ms'] for r in runs], 2)} ms, "
        f"first -> last stream p50 {summary([r['spread_p50_ms'] for r in runs], 2)} ms, "
        f"p99 {summary([r['spread_p99_ms'] for r in runs], 2)} ms",
        flush=True,
    )
    print(
        f"  connect all {summary([r['connect_s'] for r in runs], 2)} s; enqueue round trip "
        f"p50 {summary([r['enqueue_ms'] for r in runs], 2)} ms; "
        f"CPU {cpu_text(median_cpu(runs))}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="submit window per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="submit warm-up per run")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw")
    parser.add_argument("--clients", default="1,8", help="submit concurrency levels")
    parser.add_argument("--rate", type=float, default=200.0, help="SSE jobs committed per s")
    parser.add_argument("--sse-seconds", type=float, default=10.0)
    parser.add_argument(
        "--sse", default="100x10,100x1", help="SSE runs: companies x streams per company"
    )
    parser.add_argument(
        "--prefill", type=int, default=0, help="events already in the log (another company's)"
    )
    parser.add_argument("--quick", action="store_true", help="1 run each, shorter windows")
    parser.add_argument("--profile", default="", help="write py-spy stacks of serve here")
    args = parser.parse_args()
    global PROFILE_DIR
    PROFILE_DIR = args.profile
    if args.quick:
        args.repeat, args.seconds, args.warmup, args.sse_seconds = 1, 3.0, 0.5, 4.0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    with server() as url:
        with psycopg.connect(url) as conn:
            [version] = one(conn, "SHOW server_version")
        print(
            f"PostgreSQL {version}; {os.cpu_count()} cores shared by Postgres, serve and the "
            f"load generator; {args.repeat} run(s) each; {args.client} HTTP client; "
            f"{args.prefill} events in the log beforehand",
            flush=True,
        )
        for clients in (int(c) for c in args.clients.split(",") if c):
            runs = []
            for i in range(args.repeat):
                runs.append(submit_run(url, clients, args))
                print(
                    f"  submit, {clients} client(s), run {i + 1}: "
                    f"{runs[-1]['jobs_per_s']:,.0f} jobs/s",
                    flush=True,
                )
            report_submit(clients, runs)
        for shape in (s for s in args.sse.split(",") if s):
            companies, per_company = (int(n) for n in shape.split("x"))
            runs = []
            for i in range(args.repeat):
                runs.append(sse_run(url, companies, per_company, args))
                print(
                    f"  SSE, {companies * per_company} clients, run {i + 1}: "
                    f"p50 {runs[-1]['p50_ms']:.1f} ms, p99 {runs[-1]['p99_ms']:.1f} ms, "
                    f"{runs[-1]['pairs']}/{runs[-1]['expected_pairs']} events",
                    flush=True,
                )
            report_sse(runs)


if __name__ == "__main__":
    main()
