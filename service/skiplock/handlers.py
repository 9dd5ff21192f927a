"""The handler registry: `@register`, `Output`, `PermanentError`, and loading handler modules.

A handler module registers job types at import time:

    @register("slow", timeout=60, schema={"type": "object", "required": ["n"]})
    async def slow(ctx, params: dict) -> Output: ...

Workers and the API load the same modules (`--handlers`, SKIPLOCK_HANDLERS, or the
`skiplock.handlers` entry-point group), so the API can refuse an unknown `jobType` or an
input that fails the type's schema before anything is queued.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from skiplock.errors import ConfigError, SkiplockError

ENTRY_POINT_GROUP = "skiplock.handlers"
Handler = Callable[..., Any]
Validator = Callable[[dict[str, Any]], object]


class PermanentError(Exception):
    """Raised by a handler: fail the job now, without spending its remaining attempts."""


class InvalidInput(ValueError):
    """A job's input fails its type's schema or `validate=` check (HTTP 422, or a failed job)."""


class UnknownJobType(SkiplockError):
    """No handler is registered for a job type."""


@dataclass(frozen=True)
class Output:
    """What a handler returns: the file to store as the job's asset.

    Give exactly one of `data` (bytes in memory) or `path` (a file, streamed into storage,
    never read whole into memory).
    """

    filename: str
    content_type: str
    data: bytes | None = None
    path: Path | None = None

    def __post_init__(self) -> None:
        if (self.data is None) == (self.path is None):
            raise ValueError("Output needs exactly one of data= or path=")
        if not self.filename:
            raise ValueError("Output needs a filename")


@dataclass(frozen=True)
class JobType:
    """A registered job type: its handler and the checks its input must pass."""

    name: str
    handler: Handler
    timeout: float | None = None
    schema: dict[str, Any] | None = None
    validate: Validator | None = None
    is_async: bool = field(default=False)
    # Built once: building a validator costs more than validating (12 vs 7 us per submit).
    _validator: Draft202012Validator | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        validator = Draft202012Validator(self.schema) if self.schema is not None else None
        object.__setattr__(self, "_validator", validator)

    def check_input(self, params: Any) -> None:
        """Raise InvalidInput with a message a client can act on."""
        if not isinstance(params, dict):
            raise InvalidInput("input must be a JSON object")
        if self._validator is not None:
            error = next(iter(self._validator.iter_errors(params)), None)
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "(root)"
                raise InvalidInput(f"input {where}: {error.message}")
        if self.validate is not None:
            try:
                self.validate(params)
            except ValueError as exc:
                raise InvalidInput(str(exc) or "input is not valid") from None


class Registry:
    """Job types by name. One per process (`registry`), or private ones in tests."""

    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}

    def add(self, job_type: JobType) -> None:
        existing = self._types.get(job_type.name)
        if existing is not None and existing.handler is not job_type.handler:
            raise ConfigError(
                f"skiplock: job type {job_type.name!r} is registered twice "
                f"({_where(existing.handler)} and {_where(job_type.handler)})"
            )
        self._types[job_type.name] = job_type

    def get(self, name: str) -> JobType:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownJobType(f"unknown job type {name!r}") from None

    def names(self) -> list[str]:
        return sorted(self._types)

    def __contains__(self, name: object) -> bool:
        return name in self._types


registry = Registry()


def register(
    job_type: str,
    *,
    timeout: float | None = None,
    schema: dict[str, Any] | None = None,
    validate: Validator | None = None,
    into: Registry | None = None,
) -> Callable[[Handler], Handler]:
    """Decorator: make `handler(ctx, params)` run jobs of `job_type`.

    timeout: seconds one attempt may take (a job's own timeout_seconds wins).
    schema: JSON Schema (2020-12) the input must satisfy, checked at submit time.
    validate: callable(input) raising ValueError, for checks a schema cannot express.
    """
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout for {job_type!r} must be positive seconds, not {timeout!r}")
    if schema is not None:
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise ValueError(
                f"schema for {job_type!r} is not valid JSON Schema: {exc.message}"
            ) from None

    def decorate(handler: Handler) -> Handler:
        spec = JobType(
            name=job_type,
            handler=handler,
            timeout=timeout,
            schema=schema,
            validate=validate,
            is_async=inspect.iscoroutinefunction(handler),
        )
        (into or registry).add(spec)
        return handler

    return decorate


BUILTIN_MODULE = "skiplock.builtin"


def load_handler_modules(modules: Iterable[str], *, include_entry_points: bool = True) -> None:
    """Import the built-in types, then handler modules (which register their types); one
    clear line if one fails."""
    importlib.import_module(BUILTIN_MODULE)
    for name in modules:
        _import(name, hint="check --handlers / SKIPLOCK_HANDLERS")
    if include_entry_points:
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            _import(entry.value.split(":")[0], hint=f"entry point {entry.name!r} of {entry.group}")


def _import(module: str, *, hint: str) -> None:
    try:
        importlib.import_module(module)
    except Exception as exc:  # any import-time failure of someone else's module
        raise ConfigError(
            f"skiplock: cannot import handler module {module!r} "
            f"({type(exc).__name__}: {exc}); {hint}"
        ) from None


def _where(handler: Handler) -> str:
    return f"{getattr(handler, '__module__', '?')}.{getattr(handler, '__qualname__', '?')}"
