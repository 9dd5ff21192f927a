-- create_api_key: store a new key's hash for a company; the id is chosen by the caller
-- because the key text embeds it. Inserts nothing (returns no row) for an unknown company.
INSERT INTO skiplock.api_keys (id, company_id, key_hash)
SELECT %(id)s, c.id, %(key_hash)s
FROM skiplock.companies AS c
WHERE c.id = %(company_id)s
RETURNING id, company_id, created_at
