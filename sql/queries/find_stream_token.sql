-- find_stream_token: a token row and whether it is live (unexpired, its key not revoked); the
-- caller compares the hash in constant time.
SELECT t.id, t.api_key_id, t.company_id, t.token_hash, t.expires_at,
       (t.expires_at > now() AND k.revoked_at IS NULL) AS live
FROM skiplock.stream_tokens AS t
JOIN skiplock.api_keys AS k ON k.id = t.api_key_id
WHERE t.id = %(id)s
