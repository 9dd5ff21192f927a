-- revoke_api_key: mark a key revoked (idempotent: the first revocation time is kept).
UPDATE skiplock.api_keys
SET revoked_at = coalesce(revoked_at, now())
WHERE id = %(id)s
RETURNING id, company_id, revoked_at
