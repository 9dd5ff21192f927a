-- read_asset_chunks: up to %(limit)s chunks of one object from the chunk holding byte
-- %(start)s to the one holding byte %(end)s, in order. The first chunk is found by the
-- primary key (the last offset at or before start), so a Range near the end of a large
-- object reads only the chunks it needs.
SELECT byte_offset, data
FROM skiplock.asset_chunks
WHERE object_key = %(object_key)s
  AND byte_offset >= coalesce((SELECT max(byte_offset) FROM skiplock.asset_chunks
                               WHERE object_key = %(object_key)s
                                 AND byte_offset <= %(start)s), 0)
  AND byte_offset <= %(end)s
ORDER BY byte_offset
LIMIT %(limit)s
