"""Who is calling: `Authorization: Bearer <apiKey>`, or `?token=` on the routes browsers
open without headers (SSE and asset content).

A presented credential that cannot be a key or token by its shape (`sk_<32 hex>_<43
url-safe>`, 79 characters) is refused (401) before anything else: no cache entry, no pool
connection, no query. Keys and tokens are resolved against their stored hashes and cached
for a few seconds, in a bounded cache keyed by the sha256 of the credential (never the
credential itself), so the hot path costs no query and a revoked key stops working within
CACHE_SECONDS. Failures are cached too (a revoked or unknown key never becomes valid), so a
client hammering with a bad key costs one query per CACHE_SECONDS, not one per request.
Expired entries are dropped as new ones come in.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import JSONResponse

from skiplock import keys
from skiplock.api.errors import ApiError

CACHE_SECONDS = 5.0
CACHE_MAX_ENTRIES = 10_000
_SHAPES = {False: "sk_<32 hex digits>_<43 characters>", True: "st_<32 hex digits>_<43 characters>"}


@dataclass(frozen=True)
class Caller:
    company_id: uuid.UUID
    key_id: uuid.UUID
    read_only: bool  # a stream token: may read streams and asset content only


class _TtlCache:
    """Entries that expire: at most max_entries, the oldest going first; expired ones are
    dropped when met and from the front as new ones come (every entry lives at most
    `seconds`, so the front is the oldest)."""

    def __init__(
        self, seconds: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._seconds = seconds
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[float, Caller | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> tuple[bool, Caller | None]:
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        if entry[0] < self._clock():
            del self._entries[key]
            return False, None
        return True, entry[1]

    def put(self, key: bytes, caller: Caller | None, seconds: float | None = None) -> None:
        now = self._clock()
        self._entries[key] = (now + min(seconds or self._seconds, self._seconds), caller)
        self._entries.move_to_end(key)
        while self._entries:
            oldest_key, (expires, _) = next(iter(self._entries.items()))
            if expires >= now and len(self._entries) <= self._max:
                break
            del self._entries[oldest_key]


class Authenticator:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool
        self._cache = _TtlCache(CACHE_SECONDS, CACHE_MAX_ENTRIES)
        # Concurrent requests with the same uncached credential share one lookup (500
        # browsers reconnecting at once cost one query, not 500).
        self._lookups: dict[bytes, asyncio.Future[tuple[Caller | None, float | None]]] = {}

    async def caller(self, request: Request, *, token_allowed: bool = False) -> Caller:
        """The caller, or ApiError 401."""
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() == "bearer" and credential.strip():
            return await self._resolve(credential.strip(), is_token=False)
        token = request.query_params.get("token")
        if token_allowed and token:
            return await self._resolve(token, is_token=True)
        if header:
            raise ApiError(401, "the Authorization header must be `Bearer <apiKey>`")
        hint = " or ?token=" if token_allowed else ""
        raise ApiError(401, f"an API key is required (Authorization: Bearer <apiKey>{hint})")

    async def _resolve(self, credential: str, *, is_token: bool) -> Caller:
        shaped = keys.is_token_shaped if is_token else keys.is_key_shaped
        if not shaped(credential):
            what = "a stream token" if is_token else "an API key"
            raise ApiError(401, f"this is not {what} (they look like {_SHAPES[is_token]})")
        cache_key = hashlib.sha256((b"t:" if is_token else b"k:") + credential.encode()).digest()
        hit, caller = self._cache.get(cache_key)
        if not hit:
            caller, seconds = await self._shared_lookup(cache_key, credential, is_token)
            self._cache.put(cache_key, caller, seconds)
        if caller is None:
            what = (
                "stream token is invalid or expired"
                if is_token
                else "API key is invalid or revoked"
            )
            raise ApiError(401, f"this {what}")
        return caller

    async def _shared_lookup(
        self, cache_key: bytes, credential: str, is_token: bool
    ) -> tuple[Caller | None, float | None]:
        pending = self._lookups.get(cache_key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[tuple[Caller | None, float | None]]
        future = asyncio.get_running_loop().create_future()
        self._lookups[cache_key] = future
        try:
            result = await self._lookup(credential, is_token=is_token)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._lookups[cache_key]

    async def _lookup(
        self, credential: str, *, is_token: bool
    ) -> tuple[Caller | None, float | None]:
        async with self._pool.connection() as conn:
            if is_token:
                token = await keys.resolve_stream_token(conn, credential)
                if token is None:
                    return None, None
                # Never cache a token past its expiry.
                left = token.expires_at.timestamp() - time.time()
                return Caller(token.company_id, token.key_id, read_only=True), min(
                    CACHE_SECONDS, max(left, 0.01)
                )
            key = await keys.resolve_key(conn, credential)
            if key is None:
                return None, None
            return Caller(key.company_id, key.key_id, read_only=False), None


async def whoami(request: Request) -> JSONResponse:
    """GET /whoami: the company and key id of the API key presented. A key does not spell
    its company, so a client given only a key (the dashboard, skiplock.client) asks here."""
    authenticator: Authenticator = request.app.state.auth
    caller = await authenticator.caller(request)
    return JSONResponse({"companyId": str(caller.company_id), "keyId": str(caller.key_id)})


def path_uuid(request: Request, name: str) -> uuid.UUID:
    """A path id as a UUID; 404 when it is not one (SPEC §4)."""
    raw = request.path_params.get(name, "")
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        raise ApiError(404, f"no such {name.removesuffix('Id')}: {raw!r} is not a UUID") from None


@dataclass(frozen=True)
class Authorized:
    caller: Caller
    company_id: uuid.UUID
    ids: dict[str, uuid.UUID]  # the other path ids (jobId, assetId), parsed


async def authorize(
    request: Request, *id_names: str, token_allowed: bool = False, write: bool = False
) -> Authorized:
    """The caller, the path's companyId and other ids, checked in SPEC §4's order: 401 (no or
    bad key), 404 (a path id that is not a UUID), 403 (another company's key or token)."""
    authenticator: Authenticator = request.app.state.auth
    caller = await authenticator.caller(request, token_allowed=token_allowed)
    company_id = path_uuid(request, "companyId")
    ids = {name: path_uuid(request, name) for name in id_names}
    if caller.company_id != company_id:
        raise ApiError(403, "this key belongs to another company")
    if write and caller.read_only:
        raise ApiError(403, "a stream token is read-only")
    return Authorized(caller, company_id, ids)
