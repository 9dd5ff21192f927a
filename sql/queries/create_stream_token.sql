-- create_stream_token: a read-only browser token of one company, tied to the key that made
-- it (revoking the key kills it); only its hash is stored.
INSERT INTO skiplock.stream_tokens (id, api_key_id, company_id, token_hash, expires_at)
VALUES (%(id)s, %(api_key_id)s, %(company_id)s, %(token_hash)s,
        now() + make_interval(secs => %(lifetime_seconds)s))
RETURNING id, expires_at
