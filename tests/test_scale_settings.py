"""Every bad or incomplete setting of SPEC §6 (storage, S3, pooling, LISTEN URL) stops
`serve`, `worker` and `dev` at start with one line naming it, and exit 2."""

from __future__ import annotations

import pytest

from cli_helpers import one_line_error, run_cli
from processes import free_port
from s3_fixtures import CREDENTIALS, Bucket
from skiplock.errors import ConfigError
from skiplock.settings import load_settings


def args(command: str) -> list[str]:
    """The command, on a free port where it has one."""
    return [command] if command == "worker" else [command, "--port", str(free_port())]


S3 = {"SKIPLOCK_STORAGE": "s3", "SKIPLOCK_S3_BUCKET": "outputs", **CREDENTIALS}

# (environment, a word the line must hold): refused while reading the settings.
BAD = [
    ({"SKIPLOCK_STORAGE": "gcs"}, "SKIPLOCK_STORAGE='gcs'"),
    ({"SKIPLOCK_STORAGE": "s3"}, "needs SKIPLOCK_S3_BUCKET"),
    ({**S3, "SKIPLOCK_S3_BUCKET": "Not_A_Bucket"}, "SKIPLOCK_S3_BUCKET='Not_A_Bucket'"),
    ({**S3, "SKIPLOCK_S3_BUCKET": "ab"}, "SKIPLOCK_S3_BUCKET='ab'"),
    ({**S3, "SKIPLOCK_S3_ENDPOINT": "minio:9000"}, "SKIPLOCK_S3_ENDPOINT='minio:9000'"),
    ({**S3, "SKIPLOCK_S3_ENDPOINT": "ftp://minio"}, "SKIPLOCK_S3_ENDPOINT"),
    ({**S3, "SKIPLOCK_S3_REGION": "EU West"}, "SKIPLOCK_S3_REGION='EU West'"),
    ({**S3, "SKIPLOCK_S3_PRESIGN_SECONDS": "soon"}, "SKIPLOCK_S3_PRESIGN_SECONDS='soon'"),
    ({**S3, "SKIPLOCK_S3_PRESIGN_SECONDS": "604801"}, "between 0 and 604800"),
    ({**S3, "SKIPLOCK_S3_PREFIX": "/abs/"}, "SKIPLOCK_S3_PREFIX='/abs/'"),
    ({**S3, "SKIPLOCK_S3_PREFIX": "a/../b/"}, "SKIPLOCK_S3_PREFIX"),
    ({"SKIPLOCK_S3_ENDPOINT": "http://minio:9000"}, "SKIPLOCK_S3_BUCKET is not"),
    ({**S3, "AWS_SECRET_ACCESS_KEY": ""}, "AWS_SECRET_ACCESS_KEY is not set"),
    ({"SKIPLOCK_DATABASE_POOLING": "statement"}, "SKIPLOCK_DATABASE_POOLING='statement'"),
    (
        {"SKIPLOCK_LISTEN_URL": "postgresql://u:hunter2@h/db?nosuchoption=1"},
        "SKIPLOCK_LISTEN_URL is not",
    ),
]


@pytest.mark.parametrize(("env", "named"), BAD, ids=[named for _, named in BAD])
def test_a_bad_setting_is_refused_while_reading_settings(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({"DATABASE_URL": "postgresql://localhost/skiplock", **env})
    line = str(refused.value)
    assert line.startswith("skiplock: ") and "\n" not in line and named in line


def test_secrets_never_appear_in_messages_or_reprs() -> None:
    settings = load_settings({**S3, "AWS_SECRET_ACCESS_KEY": "hunter2-secret"})
    assert "hunter2" not in repr(settings)
    with pytest.raises(ConfigError) as refused:
        load_settings({"SKIPLOCK_LISTEN_URL": "postgresql://u:hunter2@[bad/db"})
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize("command", ["serve", "worker", "dev"])
def test_serve_worker_and_dev_stop_with_one_line_on_a_bad_setting(
    command: str, database_url: str
) -> None:
    """One of each kind, through the real command line (the rest share the same path)."""
    for env, named in [BAD[0], BAD[2], BAD[11], BAD[13]]:
        result = run_cli(*args(command), env={"DATABASE_URL": database_url, **env})
        assert named in one_line_error(result)


@pytest.mark.parametrize("command", ["serve", "worker", "dev"])
def test_transaction_pooling_without_a_listen_url_is_one_line(
    command: str, database_url: str
) -> None:
    env = {"DATABASE_URL": database_url, "SKIPLOCK_DATABASE_POOLING": "transaction"}
    line = one_line_error(run_cli(*args(command), env=env))
    assert "SKIPLOCK_LISTEN_URL" in line
    assert "SKIPLOCK_LISTEN_URL" in one_line_error(run_cli("migrate", env=env))


@pytest.mark.parametrize("command", ["serve", "worker", "dev"])
def test_a_bucket_that_does_not_exist_or_an_endpoint_that_does_not_answer_is_one_line(
    command: str, database_url: str, bucket: Bucket
) -> None:
    missing = bucket.env(SKIPLOCK_S3_BUCKET="no-such-bucket-here")
    line = one_line_error(run_cli(*args(command), env={"DATABASE_URL": database_url, **missing}))
    assert "'no-such-bucket-here'" in line and "does not exist" in line
    nobody = bucket.env(SKIPLOCK_S3_ENDPOINT=f"http://127.0.0.1:{free_port()}")
    line = one_line_error(run_cli(*args(command), env={"DATABASE_URL": database_url, **nobody}))
    assert "cannot reach S3" in line and "SKIPLOCK_S3_ENDPOINT" in line


def test_an_s3_setting_without_storage_s3_still_lets_serve_read_s3_assets() -> None:
    """After a switch back to local, SKIPLOCK_S3_* keep older s3 assets readable."""
    settings = load_settings({"SKIPLOCK_S3_BUCKET": "outputs", "SKIPLOCK_S3_PREFIX": "p/"})
    assert settings.storage.backend == "local"
    assert settings.storage.s3 is not None and settings.storage.s3.prefix == "p/"
