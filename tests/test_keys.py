"""API keys: random, shown once, stored only as a hash, revocable."""

from __future__ import annotations

from typing import Any

import psycopg

from skiplock import keys


async def test_key_is_stored_hashed_and_resolves_to_its_company(
    aconn: psycopg.AsyncConnection[Any],
) -> None:
    new = await keys.create_company(aconn, "acme")
    _, secret = keys.parse_key(new.api_key) or (None, "")
    assert len(secret) >= 43  # 256 random bits, url-safe
    cur = await aconn.execute("SELECT k.*::text FROM skiplock.api_keys k")
    stored = " ".join(r[0] for r in await cur.fetchall())
    assert secret not in stored and new.api_key not in stored
    assert keys.hash_secret(secret) in stored

    resolved = await keys.resolve_key(aconn, new.api_key)
    assert resolved == keys.ResolvedKey(key_id=new.key_id, company_id=new.company_id)


async def test_wrong_malformed_and_revoked_keys_do_not_resolve(
    aconn: psycopg.AsyncConnection[Any],
) -> None:
    new = await keys.create_company(aconn, "acme")
    tampered = new.api_key[:-1] + ("A" if new.api_key[-1] != "A" else "B")
    assert await keys.resolve_key(aconn, tampered) is None
    assert await keys.resolve_key(aconn, "sk_nope") is None
    assert await keys.resolve_key(aconn, "") is None
    unknown_id, _ = keys.make_key(keys.uuid.uuid4())
    assert await keys.resolve_key(aconn, unknown_id) is None

    second = await keys.create_key(aconn, new.company_id)
    await keys.revoke_key(aconn, new.key_id)
    assert await keys.resolve_key(aconn, new.api_key) is None
    assert await keys.resolve_key(aconn, second.api_key) is not None  # other keys live on


def test_keys_are_unique() -> None:
    made = {keys.make_key(keys.uuid.uuid4())[0] for _ in range(1000)}
    assert len(made) == 1000
