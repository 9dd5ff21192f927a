-- 0005.storage: outputs every host can reach. The `postgres` storage backend's chunk table,
-- and the record of uploads in flight that lets any worker remove an object whose asset row
-- never committed.
-- depends: 0004.pause-and-running-hint

-- ---------------------------------------------------------------------------------------
-- The `postgres` backend: an object's bytes as rows of bytea chunks
-- ---------------------------------------------------------------------------------------
CREATE TABLE skiplock.asset_chunks (
    object_key  text NOT NULL,
    byte_offset bigint NOT NULL CONSTRAINT byte_offset_not_negative CHECK (byte_offset >= 0),
    data        bytea NOT NULL,
    PRIMARY KEY (object_key, byte_offset)
);
-- Outputs are mostly compressed already (PNG, MP4, PDF): storing them uncompressed out of
-- line skips a pointless pglz attempt on every chunk and lets substring() read a slice
-- without detoasting the whole value.
ALTER TABLE skiplock.asset_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
COMMENT ON TABLE skiplock.asset_chunks IS
  'Bytes of the assets whose provider is ''postgres'' (SKIPLOCK_STORAGE=postgres): one row per chunk of about 1 MiB, written in short transactions of their own before the job''s done commits, so no transaction spans an upload. An object with no row does not exist; an empty object is one row with empty data. Reading a Range starts at the chunk holding its first byte.';
COMMENT ON COLUMN skiplock.asset_chunks.object_key IS
  'The object''s key, as in skiplock.assets.object_key where provider = ''postgres''.';
COMMENT ON COLUMN skiplock.asset_chunks.byte_offset IS
  'Where this chunk starts within the object. Chunks are contiguous: each starts where the one before ends, and the object''s size is the last offset plus the last chunk''s length.';
COMMENT ON COLUMN skiplock.asset_chunks.data IS
  'The chunk''s bytes (storage EXTERNAL: uncompressed, out of line).';

-- ---------------------------------------------------------------------------------------
-- Uploads in flight: what to remove when an asset row never commits
-- ---------------------------------------------------------------------------------------
CREATE TABLE skiplock.asset_uploads (
    provider   text NOT NULL,
    object_key text NOT NULL,
    job_id     uuid NOT NULL,
    attempt    integer NOT NULL,
    worker_id  text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, object_key)
);
COMMENT ON TABLE skiplock.asset_uploads IS
  'One row per output a worker is storing, written (in a transaction of its own) before the upload starts and deleted in the transaction that commits the asset row. A row whose job attempt is over without an asset row names an orphan object: the worker removes it at once when it can, else any worker''s housekeeping does (worker gone, or the delete failed), within minutes.';
COMMENT ON COLUMN skiplock.asset_uploads.provider IS 'The storage backend the object goes to (local, s3 or postgres).';
COMMENT ON COLUMN skiplock.asset_uploads.object_key IS 'The object''s key in that backend.';
COMMENT ON COLUMN skiplock.asset_uploads.job_id IS 'The job whose output it is (skiplock.content_jobs.id; no FK, jobs may be deleted).';
COMMENT ON COLUMN skiplock.asset_uploads.attempt IS 'The attempt that produced it: once the job is no longer running at this attempt under worker_id, the asset row can never commit.';
COMMENT ON COLUMN skiplock.asset_uploads.worker_id IS 'The worker storing it (skiplock.workers.id).';
COMMENT ON COLUMN skiplock.asset_uploads.started_at IS 'When the upload was about to start.';
