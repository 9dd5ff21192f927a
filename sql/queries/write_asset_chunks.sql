-- write_asset_chunks: a batch of chunks of one object of the `postgres` storage backend, in a
-- short transaction of its own (the upload never holds one open across handler work).
-- %(datas)b: the chunks travel in binary (as text, bytea is hex: twice the bytes).
INSERT INTO skiplock.asset_chunks (object_key, byte_offset, data)
SELECT %(object_key)s, c.byte_offset, c.data
FROM unnest(%(byte_offsets)s::bigint[], %(datas)b::bytea[]) AS c (byte_offset, data)
