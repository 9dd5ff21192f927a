"""The handler API: register, Output, PermanentError, input checks, loading modules."""

from __future__ import annotations

import random
import sys
import textwrap
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import skiplock
from skiplock import handlers
from skiplock.errors import ConfigError
from skiplock.worker import retry_policy


@pytest.fixture
def private() -> handlers.Registry:
    return handlers.Registry()


@pytest.fixture
def import_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on sys.path for handler modules (and fake distributions) made by a test."""
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("handlers_under_test")]:
        del sys.modules[name]


def test_public_api_is_importable_from_the_package() -> None:
    assert skiplock.register is handlers.register
    assert skiplock.Output is handlers.Output
    assert skiplock.PermanentError is handlers.PermanentError


def test_register_records_the_type_and_returns_the_handler(private: handlers.Registry) -> None:
    async def slow(ctx: Any, params: dict[str, Any]) -> None:
        return None

    def blocking(ctx: Any, params: dict[str, Any]) -> None:
        return None

    assert handlers.register("slow", timeout=60, into=private)(slow) is slow
    handlers.register("blocking", into=private)(blocking)
    assert private.names() == ["blocking", "slow"]
    assert private.get("slow").is_async and private.get("slow").timeout == 60
    assert not private.get("blocking").is_async
    with pytest.raises(handlers.UnknownJobType, match="'nope'"):
        private.get("nope")


def test_registering_a_type_twice_is_refused(private: handlers.Registry) -> None:
    handlers.register("x", into=private)(lambda ctx, p: None)
    with pytest.raises(ConfigError, match="registered twice"):
        handlers.register("x", into=private)(lambda ctx, p: None)


def test_bad_schema_or_timeout_is_refused_at_registration() -> None:
    with pytest.raises(ValueError, match="not valid JSON Schema"):
        handlers.register("x", schema={"type": "no-such-type"})
    with pytest.raises(ValueError, match="positive"):
        handlers.register("x", timeout=0)


def test_input_checks_name_what_is_wrong(private: handlers.Registry) -> None:
    def even(params: dict[str, Any]) -> None:
        if params["n"] % 2:
            raise ValueError("n must be even")

    schema = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
    handlers.register("slow", schema=schema, validate=even, into=private)(lambda c, p: None)
    job_type = private.get("slow")
    job_type.check_input({"n": 2})
    with pytest.raises(handlers.InvalidInput, match="'n' is a required property"):
        job_type.check_input({})
    with pytest.raises(handlers.InvalidInput, match="input n: 'x' is not of type 'integer'"):
        job_type.check_input({"n": "x"})
    with pytest.raises(handlers.InvalidInput, match="n must be even"):
        job_type.check_input({"n": 3})
    with pytest.raises(handlers.InvalidInput, match="JSON object"):
        job_type.check_input([1])


def test_output_needs_exactly_one_source(tmp_path: Path) -> None:
    handlers.Output(filename="a.txt", content_type="text/plain", data=b"x")
    handlers.Output(filename="a.txt", content_type="text/plain", path=tmp_path / "a")
    with pytest.raises(ValueError, match="exactly one"):
        handlers.Output(filename="a.txt", content_type="text/plain")
    with pytest.raises(ValueError, match="exactly one"):
        handlers.Output(filename="a", content_type="t", data=b"x", path=tmp_path / "a")


def test_handler_module_registers_on_load(import_dir: Path) -> None:
    job_type = f"t{uuid.uuid4().hex[:8]}"
    (import_dir / "handlers_under_test_ok.py").write_text(
        textwrap.dedent(f"""
        from skiplock import register

        @register("{job_type}")
        async def handle(ctx, params):
            return None
    """)
    )
    handlers.load_handler_modules(["handlers_under_test_ok"], include_entry_points=False)
    assert job_type in handlers.registry


def test_handler_module_that_fails_to_import_is_one_clear_line(import_dir: Path) -> None:
    (import_dir / "handlers_under_test_bad.py").write_text("raise RuntimeError('no renderer')\n")
    with pytest.raises(ConfigError) as caught:
        handlers.load_handler_modules(["handlers_under_test_bad"], include_entry_points=False)
    assert str(caught.value) == (
        "skiplock: cannot import handler module 'handlers_under_test_bad' "
        "(RuntimeError: no renderer); check --handlers / SKIPLOCK_HANDLERS"
    )
    with pytest.raises(ConfigError, match="ModuleNotFoundError"):
        handlers.load_handler_modules(["handlers_under_test_missing"], include_entry_points=False)


def test_entry_point_group_modules_are_loaded(import_dir: Path) -> None:
    job_type = f"ep{uuid.uuid4().hex[:8]}"
    (import_dir / "handlers_under_test_ep.py").write_text(
        f"from skiplock import register\nregister('{job_type}')(lambda ctx, params: None)\n"
    )
    dist = import_dir / "handlers_under_test_dist-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: handlers-under-test-dist\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text("[skiplock.handlers]\nmine = handlers_under_test_ep\n")
    handlers.load_handler_modules([])
    assert job_type in handlers.registry


def test_backoff_doubles_with_jitter_and_caps_at_an_hour() -> None:
    rng = random.Random(1)
    for attempt in range(1, 20):
        base = min(2**attempt, 3600)
        waited = retry_policy.backoff_seconds(attempt, rng)
        assert base <= waited <= base * 1.25
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = retry_policy.next_run_at(now, 3, random.Random(2))
    assert timedelta(seconds=8) <= later - now <= timedelta(seconds=10)
