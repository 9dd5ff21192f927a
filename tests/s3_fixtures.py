"""A real S3 protocol endpoint for tests: moto's server on 127.0.0.1, one bucket per test,
inspected with boto3 (another client than skiplock's obstore), so a test does not only
trust skiplock's own reads. moto is not AWS: it checks the protocol, not AWS's limits."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from processes import free_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "skiplock-test", "AWS_SECRET_ACCESS_KEY": "skiplock-secret"}


class MotoServer:
    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()


@dataclass
class Bucket:
    name: str
    endpoint: str
    client: Any  # boto3's S3 client

    def env(self, **extra: str) -> dict[str, str]:
        """What a skiplock process needs to store outputs in this bucket."""
        return {
            **CREDENTIALS,
            "SKIPLOCK_STORAGE": "s3",
            "SKIPLOCK_S3_BUCKET": self.name,
            "SKIPLOCK_S3_ENDPOINT": self.endpoint,
            **extra,
        }

    def keys(self) -> list[str]:
        listed = self.client.list_objects_v2(Bucket=self.name)
        return sorted(item["Key"] for item in listed.get("Contents", []))

    def multipart_uploads(self) -> list[str]:
        listed = self.client.list_multipart_uploads(Bucket=self.name)
        return [upload["Key"] for upload in listed.get("Uploads", [])]

    def read(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.name, Key=key)["Body"].read()
        return body

    def sha256(self, key: str) -> str:
        return hashlib.sha256(self.read(key)).hexdigest()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bucket(moto_server: MotoServer) -> Bucket:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=moto_server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    name = f"skiplock-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return Bucket(name, moto_server.endpoint, client)
