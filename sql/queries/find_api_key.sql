-- find_api_key: the key row a presented key names, live or revoked; the caller compares the
-- hash in constant time and checks revoked_at.
SELECT id, company_id, key_hash, revoked_at
FROM skiplock.api_keys
WHERE id = %(id)s
