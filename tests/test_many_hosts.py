"""Many hosts, one Postgres (SPEC §6): one `serve` and two `worker` processes, each with its
own empty working and storage directory, on the `s3` backend (moto, inspected with boto3)
and on `postgres`. Every output downloads through serve with the right sha256; outputs
over the limit, of canceled jobs and of a worker killed between upload and commit leave
no object, no multipart upload and no chunk row."""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from cli_helpers import run_cli
from hosts import Host, new_dir, start_serve, start_worker
from processes import peak_rss_mib
from s3_fixtures import Bucket
from storage_handlers import blob_bytes
from worker_harness import wait_for

MiB = 1 << 20
Conn = psycopg.Connection[Any]


@dataclass
class Store:
    """A backend as the processes are told of it, and what it really holds."""

    name: str
    env: dict[str, str]
    stored: Callable[[], list[str]]
    read: Callable[[str], bytes]  # an object's bytes, read without skiplock


@pytest.fixture(params=["s3", "postgres"])
def store(request: pytest.FixtureRequest, database_url: str) -> Store:
    if request.param == "s3":
        bucket: Bucket = request.getfixturevalue("bucket")
        return Store(
            "s3", bucket.env(), lambda: bucket.keys() + bucket.multipart_uploads(), bucket.read
        )

    def chunk_keys() -> list[str]:
        with psycopg.connect(database_url) as conn:
            rows = conn.execute("SELECT DISTINCT object_key FROM skiplock.asset_chunks")
            return sorted(row[0] for row in rows)

    def chunks(key: str) -> bytes:
        with psycopg.connect(database_url) as conn:
            rows = conn.execute(
                "SELECT data FROM skiplock.asset_chunks WHERE object_key = %s ORDER BY byte_offset",
                (key,),
            )
            return b"".join(row[0] for row in rows)

    return Store("postgres", {"SKIPLOCK_STORAGE": "postgres"}, chunk_keys, chunks)


@dataclass
class Tenant:
    company_id: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@pytest.fixture
def tenant(database_url: str) -> Tenant:
    made = run_cli("company", "create", "acme", env={"DATABASE_URL": database_url})
    assert made.returncode == 0, made.stderr
    new = json.loads(made.stdout)
    return Tenant(new["companyId"], new["apiKey"])


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    """Processes to stop (and kill if they will not) when the test ends."""
    started: list[Host] = []
    yield started
    codes = {}
    for host in started:
        if host.process.poll() is None:
            try:
                codes[host.directory.name] = host.stop()
            except Exception:
                host.kill()
    # SIGTERM ends every live host with 0 (an obstore runtime aborting at exit would not).
    assert set(codes.values()) <= {0}, codes


def submit(serve: Host, tenant: Tenant, job_type: str, params: dict[str, Any]) -> str:
    response = httpx.post(
        f"{serve.base_url}/companies/{tenant.company_id}/content-jobs",
        json={"jobType": job_type, "input": params},
        headers=tenant.headers,
    )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["jobId"]
    return job_id


def job(serve: Host, tenant: Tenant, job_id: str) -> dict[str, Any]:
    url = f"{serve.base_url}/companies/{tenant.company_id}/content-jobs/{job_id}"
    found: dict[str, Any] = httpx.get(url, headers=tenant.headers).json()
    return found


def finished(serve: Host, tenant: Tenant, job_ids: list[str]) -> Callable[[], bool]:
    return lambda: all(
        job(serve, tenant, j)["status"] in ("done", "failed", "canceled") for j in job_ids
    )


def deploy(
    hosts: list[Host],
    database_url: str,
    root: Path,
    env: dict[str, str],
    *worker_args: str,
    workers: int = 1,
) -> tuple[Host, list[Host]]:
    """A `serve` and `workers` worker processes, each in a directory of its own."""
    serve = start_serve(database_url, new_dir(root, "serve"), env)
    hosts.append(serve)
    for n in range(1, workers + 1):
        hosts.append(start_worker(database_url, new_dir(root, f"worker{n}"), *worker_args, env=env))
    return serve, hosts[-workers:]


@contextlib.contextmanager
def canceled_once_stored(database_url: str, job_id: str, store: Store) -> Iterator[None]:
    """Hold the job's row, so its worker's completion waits behind it; yield once its
    output is stored; then cancel the job and let go: the asset row can never commit."""
    with psycopg.connect(database_url) as holder:
        holder.execute("SELECT 1 FROM skiplock.content_jobs WHERE id = %s FOR UPDATE", (job_id,))
        wait_for(lambda: len(store.stored()) == 1, timeout=30)  # uploaded, not committed
        yield
        holder.execute(
            "UPDATE skiplock.content_jobs SET status = 'canceled' WHERE id = %s", (job_id,)
        )


def content_url(serve: Host, tenant: Tenant, asset_id: str) -> str:
    return f"{serve.base_url}/companies/{tenant.company_id}/assets/{asset_id}/content"


def no_uploads_recorded(conn: Conn) -> Callable[[], bool]:
    return lambda: conn.execute("SELECT count(*) FROM skiplock.asset_uploads").fetchone() == (0,)


def test_outputs_of_two_worker_hosts_download_through_serve(
    store: Store,
    database_url: str,
    tenant: Tenant,
    hosts: list[Host],
    tmp_path: Path,
    conn: Conn,
) -> None:
    serve, workers = deploy(
        hosts, database_url, tmp_path, store.env, "--concurrency", "2", workers=2
    )
    # Small outputs (diagrams), a few chunks, and on s3 one past the multipart threshold.
    sizes = [0, 1, 100, 5_000, 70_000, 300_000, MiB + 1, 3 * MiB, 100, 200, 9 * MiB + 7, 42]
    job_ids = [submit(serve, tenant, "blob", {"size": size, "seconds": 0.3}) for size in sizes]
    wait_for(finished(serve, tenant, job_ids), timeout=90)

    makers = set()
    with httpx.Client(headers=tenant.headers) as client:
        for job_id, size in zip(job_ids, sizes, strict=True):
            done = job(serve, tenant, job_id)
            assert done["status"] == "done", done
            asset_id = done["resultAssetId"]
            asset = client.get(f"{serve.base_url}/companies/{tenant.company_id}/assets/{asset_id}")
            response = client.get(content_url(serve, tenant, asset_id))
            assert response.status_code == 200, response.text
            body = response.content
            digest = hashlib.sha256(body).hexdigest()
            assert (
                (len(body), digest)
                == (size, asset.json()["sha256"])
                == (size, asset.json()["sha256"])
            )
            assert response.headers["etag"] == f'"{digest}"'
            if size > 10:  # the maker's pid heads the bytes: recompute them
                pid = int(body.split(b"\n", 1)[0])
                makers.add(pid)
                assert body == blob_bytes(job_id, pid, size)
    assert makers == {worker.pid for worker in workers}  # both hosts did some of the jobs

    # Range and 304 through serve, on this backend.
    big = job(serve, tenant, job_ids[7])["resultAssetId"]
    whole = httpx.get(content_url(serve, tenant, big), headers=tenant.headers).content
    ranged = httpx.get(
        content_url(serve, tenant, big),
        headers={**tenant.headers, "Range": "bytes=1048570-1048590"},
    )
    assert ranged.status_code == 206 and ranged.content == whole[1048570:1048591]
    etag = hashlib.sha256(whole).hexdigest()
    cached = httpx.get(
        content_url(serve, tenant, big), headers={**tenant.headers, "If-None-Match": f'"{etag}"'}
    )
    assert cached.status_code == 304

    # Where the bytes are: every asset in this backend, no file on any host's disk.
    rows = conn.execute(
        "SELECT provider, object_key, byte_size, sha256 FROM skiplock.assets"
    ).fetchall()
    assert {provider for provider, *_ in rows} == {store.name}
    assert sorted(key for _, key, *_ in rows) == store.stored()
    for _, key, byte_size, sha256 in rows:  # read with boto3 / plain SQL, not skiplock
        stored = store.read(key)
        assert (len(stored), hashlib.sha256(stored).hexdigest()) == (byte_size, sha256)
    for host in hosts:
        assert not any(p.is_file() for p in (host.directory / "storage").rglob("*"))
    assert no_uploads_recorded(conn)()


def test_outputs_over_the_limit_and_of_canceled_jobs_leave_nothing(
    store: Store,
    database_url: str,
    tenant: Tenant,
    hosts: list[Host],
    tmp_path: Path,
    conn: Conn,
) -> None:
    # 10 MiB: on s3 a 12 MiB output is cut off after its multipart upload started.
    env = {**store.env, "SKIPLOCK_GENERATED_ASSET_MAX_BYTES": str(10 * MiB)}
    serve, (worker,) = deploy(hosts, database_url, tmp_path, env)

    too_big = [submit(serve, tenant, "blob", {"size": size}) for size in (12 * MiB, 10 * MiB + 1)]
    wait_for(finished(serve, tenant, too_big), timeout=60)
    for job_id in too_big:
        failed = job(serve, tenant, job_id)
        assert failed["status"] == "failed"
        assert "SKIPLOCK_GENERATED_ASSET_MAX_BYTES=10485760" in failed["errorMessage"]
        assert failed["resultAssetId"] is None

    # Canceled after its output was stored, before its completion could commit: the
    # test holds the job's row, so the worker's completion waits behind it.
    job_id = submit(serve, tenant, "blob", {"size": 3 * MiB, "seconds": 0.5})
    wait_for(lambda: job(serve, tenant, job_id)["status"] == "running")
    with canceled_once_stored(database_url, job_id, store):
        pass
    wait_for(lambda: store.stored() == [], timeout=30)  # removed at once by its worker
    wait_for(no_uploads_recorded(conn))
    assert job(serve, tenant, job_id)["status"] == "canceled"
    assert conn.execute("SELECT count(*) FROM skiplock.assets").fetchone() == (0,)
    assert "job outcome not written: no longer ours" in worker.log()


def test_a_worker_killed_between_upload_and_commit_leaves_an_orphan_housekeeping_removes(
    store: Store,
    database_url: str,
    tenant: Tenant,
    hosts: list[Host],
    tmp_path: Path,
    conn: Conn,
) -> None:
    serve, (doomed,) = deploy(hosts, database_url, tmp_path, store.env)
    job_id = submit(serve, tenant, "blob", {"size": 2 * MiB + 5, "seconds": 0.5})
    wait_for(lambda: job(serve, tenant, job_id)["status"] == "running")
    with canceled_once_stored(database_url, job_id, store):
        doomed.kill()  # kill -9: stored, never committed, never cleaned up by its worker
    orphan = store.stored()
    assert len(orphan) == 1
    (recorded,) = conn.execute(
        "SELECT object_key FROM skiplock.asset_uploads WHERE job_id = %s", (job_id,)
    ).fetchone() or (None,)
    assert [recorded] == orphan
    # Time passes: the dead worker's heartbeat is older than WORKER_GONE_SECONDS.
    conn.execute(
        "UPDATE skiplock.workers SET last_seen_at = now() - interval '10 minutes' "
        "WHERE hostname IS NOT NULL"
    )
    sweeper = start_worker(database_url, new_dir(tmp_path, "sweeper"), env=store.env)
    hosts.append(sweeper)
    wait_for(lambda: store.stored() == [], timeout=30)  # any worker's housekeeping
    wait_for(no_uploads_recorded(conn))
    assert "removed 1 orphan object(s)" in sweeper.log()


def test_presigned_downloads_are_a_307_to_the_bucket_after_the_same_checks(
    bucket: Bucket, database_url: str, tenant: Tenant, hosts: list[Host], tmp_path: Path
) -> None:
    env = bucket.env(SKIPLOCK_S3_PRESIGN_SECONDS="120")
    serve, (worker,) = deploy(hosts, database_url, tmp_path, env)
    job_id = submit(serve, tenant, "blob", {"size": 50_000})
    wait_for(finished(serve, tenant, [job_id]))
    done = job(serve, tenant, job_id)
    url = content_url(serve, tenant, done["resultAssetId"])

    assert httpx.get(url).status_code == 401  # auth first, as ever
    redirect = httpx.get(url, headers=tenant.headers)
    assert redirect.status_code == 307
    assert redirect.headers["cache-control"] == "no-store"
    location = redirect.headers["location"]
    assert (
        location.startswith(f"{bucket.endpoint}/{bucket.name}/") and "X-Amz-Expires=120" in location
    )
    direct = httpx.get(location)  # no credentials, no API key: the signature is the pass
    assert direct.status_code == 200
    assert direct.content == blob_bytes(job_id, worker.pid, 50_000)
    assert direct.headers["content-disposition"].startswith("attachment;")
    assert "blob-50000.bin" in direct.headers["content-disposition"]
    sha = hashlib.sha256(direct.content).hexdigest()
    cached = httpx.get(url, headers={**tenant.headers, "If-None-Match": f'"{sha}"'})
    assert cached.status_code == 304


@pytest.mark.slow
def test_a_store_that_is_down_retries_the_attempt_and_content_answers_503(
    database_url: str, tenant: Tenant, hosts: list[Host], tmp_path: Path
) -> None:
    import boto3

    from s3_fixtures import CREDENTIALS, MotoServer

    moto = MotoServer()
    moto.start()
    try:
        name = f"down-{uuid.uuid4().hex[:8]}"
        boto3.client(
            "s3",
            endpoint_url=moto.endpoint,
            region_name="us-east-1",
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        ).create_bucket(Bucket=name)
        bucket = Bucket(name, moto.endpoint, None)
        serve, _ = deploy(hosts, database_url, tmp_path, bucket.env())
        first = submit(serve, tenant, "blob", {"size": 1000})
        wait_for(finished(serve, tenant, [first]))
        url = content_url(serve, tenant, job(serve, tenant, first)["resultAssetId"])
        assert httpx.get(url, headers=tenant.headers).status_code == 200

        moto.stop()
        down = httpx.get(url, headers=tenant.headers, timeout=60)
        assert down.status_code == 503, down.text
        assert down.json()["error"]["code"] == "storage_unavailable"
        second = submit(serve, tenant, "blob", {"size": 1000})
        wait_for(
            lambda: (
                job(serve, tenant, second)["attempts"] >= 1
                and job(serve, tenant, second)["status"] == "queued"
            ),
            timeout=60,
        )
        retried = job(serve, tenant, second)
        assert "S3 could not store" in retried["errorMessage"]

        moto.start()  # the same port: the store is back, with its buckets (moto's state)
        wait_for(lambda: job(serve, tenant, second)["status"] == "done", timeout=60)
        assert job(serve, tenant, second)["attempts"] == 2
        assert httpx.get(url, headers=tenant.headers).status_code == 200
    finally:
        moto.stop()


@pytest.mark.slow
def test_a_200_mib_output_keeps_the_worker_under_100_mib_rss(
    store: Store,
    database_url: str,
    tenant: Tenant,
    hosts: list[Host],
    tmp_path: Path,
    conn: Conn,
) -> None:
    serve, (worker,) = deploy(hosts, database_url, tmp_path, store.env)
    job_id = submit(serve, tenant, "stream", {"mib": 200})
    wait_for(finished(serve, tenant, [job_id]), timeout=300)
    peak = peak_rss_mib(worker.pid)
    done = job(serve, tenant, job_id)
    assert done["status"] == "done", done["errorMessage"]
    size, digest = conn.execute(
        "SELECT byte_size, sha256 FROM skiplock.assets WHERE id = %s", (done["resultAssetId"],)
    ).fetchone() or (None, None)
    assert size == 200 * MiB
    streamed = hashlib.sha256()
    with httpx.stream(
        "GET",
        content_url(serve, tenant, done["resultAssetId"]),
        headers=tenant.headers,
        timeout=120,
    ) as response:
        for chunk in response.iter_bytes():
            streamed.update(chunk)
    assert streamed.hexdigest() == digest
    print(f"{store.name}: worker peak RSS {peak:.0f} MiB")
    assert peak < 100, f"worker peak RSS {peak:.0f} MiB"
