-- Event pruning reads content_job_events by age. A BRIN index fits an append-only log whose
-- created_at grows with its physical order: a few pages, nearly free to maintain on insert.
-- depends: 0001.schema
CREATE INDEX content_job_events_created_brin ON skiplock.content_job_events USING brin (created_at);
COMMENT ON INDEX skiplock.content_job_events_created_brin IS
  'Finds events older than SKIPLOCK_EVENT_RETENTION_DAYS for pruning without scanning the log.';
