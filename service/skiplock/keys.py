"""Companies and API keys: create, revoke, and resolve a presented key to its company.

A key reads `sk_<key id, 32 hex>_<secret, 43 url-safe chars = 256 bits>`. Only the sha256
of the secret is stored; the key is shown once. Naming its own id lets a lookup go by
primary key and the hash be compared in constant time (hmac.compare_digest), so response
times say nothing about how much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from skiplock import store
from skiplock.errors import NotFound

KEY_PREFIX = "sk"
_KEY_PATTERN = re.compile(r"sk_([0-9a-f]{32})_([A-Za-z0-9_-]{43})")
# Every key and stream token is exactly this long: prefix, id, secret and two underscores.
CREDENTIAL_LENGTH = 2 + 1 + 32 + 1 + 43


@dataclass(frozen=True)
class NewKey:
    key_id: uuid.UUID
    company_id: uuid.UUID
    api_key: str  # the only time the full key exists outside the caller's hands


@dataclass(frozen=True)
class ResolvedKey:
    key_id: uuid.UUID
    company_id: uuid.UUID


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def make_key(key_id: uuid.UUID) -> tuple[str, str]:
    """A new key text for key_id, and the hash to store."""
    secret = secrets.token_urlsafe(32)  # 256 bits
    return f"{KEY_PREFIX}_{key_id.hex}_{secret}", hash_secret(secret)


def is_key_shaped(text: str) -> bool:
    """Whether text could be a key: checked (length first) before any lookup or cache."""
    return len(text) == CREDENTIAL_LENGTH and _KEY_PATTERN.fullmatch(text) is not None


def is_token_shaped(text: str) -> bool:
    return len(text) == CREDENTIAL_LENGTH and _TOKEN_PATTERN.fullmatch(text) is not None


def parse_key(api_key: str) -> tuple[uuid.UUID, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    match = _KEY_PATTERN.fullmatch(api_key)
    if not match:
        return None
    return uuid.UUID(hex=match.group(1)), match.group(2)


async def create_company(conn: AsyncConnection[Any], name: str) -> NewKey:
    """A new company with its first API key."""
    company = await store.create_company(conn, name)
    return await create_key(conn, company["id"])


async def create_key(conn: AsyncConnection[Any], company_id: uuid.UUID) -> NewKey:
    key_id = uuid.uuid4()
    api_key, key_hash = make_key(key_id)
    row = await store.create_api_key(conn, key_id, company_id, key_hash)
    if row is None:
        raise NotFound(
            f"skiplock: no company with id {company_id}; "
            "the ids are in the table skiplock.companies"
        )
    return NewKey(key_id=key_id, company_id=company_id, api_key=api_key)


async def revoke_key(conn: AsyncConnection[Any], key_id: uuid.UUID) -> None:
    if await store.revoke_api_key(conn, key_id) is None:
        raise NotFound(f"skiplock: no API key with id {key_id}")


async def resolve_key(conn: AsyncConnection[Any], api_key: str) -> ResolvedKey | None:
    """The company a live key belongs to; None for a malformed, unknown or revoked key."""
    parsed = parse_key(api_key)
    if parsed is None:
        return None
    key_id, secret = parsed
    row = await store.find_api_key(conn, key_id)
    # Hash and compare even when the row is missing, so timing does not tell ids apart.
    stored = row["key_hash"] if row else "0" * 64
    matches = hmac.compare_digest(stored, hash_secret(secret))
    if row is None or not matches or row["revoked_at"] is not None:
        return None
    return ResolvedKey(key_id=row["id"], company_id=row["company_id"])


# ------------------------------------------------------------------------------------------
# Stream tokens: read-only, one company, one hour, for browsers (EventSource, <img>)
# ------------------------------------------------------------------------------------------

TOKEN_PREFIX = "st"  # noqa: S105  (a prefix, not a secret)
TOKEN_LIFETIME_SECONDS = 3600
_TOKEN_PATTERN = re.compile(r"st_([0-9a-f]{32})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True)
class NewToken:
    token: str
    expires_at: Any  # datetime


@dataclass(frozen=True)
class ResolvedToken:
    token_id: uuid.UUID
    key_id: uuid.UUID
    company_id: uuid.UUID
    expires_at: Any  # datetime


async def create_stream_token(conn: AsyncConnection[Any], key: ResolvedKey) -> NewToken:
    token_id = uuid.uuid4()
    secret = secrets.token_urlsafe(32)
    row = await store.create_stream_token(
        conn,
        token_id=token_id,
        key_id=key.key_id,
        company_id=key.company_id,
        token_hash=hash_secret(secret),
        lifetime_seconds=TOKEN_LIFETIME_SECONDS,
    )
    return NewToken(f"{TOKEN_PREFIX}_{token_id.hex}_{secret}", row["expires_at"])


async def resolve_stream_token(conn: AsyncConnection[Any], token: str) -> ResolvedToken | None:
    """The company of a live token: well-formed, known, unexpired, its key not revoked."""
    match = _TOKEN_PATTERN.fullmatch(token)
    if not match:
        return None
    token_id, secret = uuid.UUID(hex=match.group(1)), match.group(2)
    row = await store.find_stream_token(conn, token_id)
    stored = row["token_hash"] if row else "0" * 64
    matches = hmac.compare_digest(stored, hash_secret(secret))
    if row is None or not matches or not row["live"]:
        return None
    return ResolvedToken(token_id, row["api_key_id"], row["company_id"], row["expires_at"])
