-- 0002.worker: what the worker runtime needs beyond 0001.
-- depends: 0001.schema

-- Event pruning reads content_job_events by age. A BRIN index fits an append-only log whose
-- created_at grows with its physical order: a few pages, nearly free to maintain on insert.
CREATE INDEX content_job_events_created_brin ON skiplock.content_job_events USING brin (created_at);
COMMENT ON INDEX skiplock.content_job_events_created_brin IS
  'Finds events older than SKIPLOCK_EVENT_RETENTION_DAYS for pruning without scanning the log.';

-- The planner sizes a trigger's transition tables like the whole table, so on a large
-- content_jobs a 10-row claim looked like millions of rows, crossed jit_above_cost, and
-- spent ~130 ms compiling each event-log statement (measured: a 20,000-job drain ran at
-- 1.2k jobs/s instead of 3k+). The event-log statements touch one batch of rows: never JIT.
ALTER FUNCTION skiplock.content_jobs_log_insert() SET jit = off;
ALTER FUNCTION skiplock.content_jobs_log_update() SET jit = off;
