-- asset_chunks_size: an object's size in the `postgres` backend (its last chunk's end), from
-- one index probe; no row means no such object. octet_length() reads the value's header only.
SELECT byte_offset + octet_length(data) AS byte_size
FROM skiplock.asset_chunks
WHERE object_key = %(object_key)s
ORDER BY byte_offset DESC
LIMIT 1
