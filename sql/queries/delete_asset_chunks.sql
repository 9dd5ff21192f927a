-- delete_asset_chunks: remove up to %(limit)s chunks of one object (the caller repeats until
-- none is left), so deleting a large object never holds a long transaction.
DELETE FROM skiplock.asset_chunks
WHERE object_key = %(object_key)s
  AND byte_offset IN (SELECT byte_offset FROM skiplock.asset_chunks
                      WHERE object_key = %(object_key)s
                      ORDER BY byte_offset
                      LIMIT %(limit)s)
