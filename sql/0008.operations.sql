-- 0008.operations: what bulk changes, pausing and job retention (SPEC §8) tell a person in
-- psql. No new object: the bulk statements and the purge use the existing indexes
-- ((company_id, status) and (company_id, created_at)), so no job's completion pays for them.
-- depends: 0007.webhooks-schedules

COMMENT ON TABLE skiplock.content_jobs IS
  'The queue. queued -> running -> done|failed; queued|running -> canceled; failed|canceled -> queued by retry. Any insert, status change or progress change (from skiplock or by hand) appends content_job_events rows and rings NOTIFY. Change many rows in batches of about 1,000 (`skiplock jobs cancel|retry` do). With SKIPLOCK_JOB_RETENTION_DAYS set, finished jobs older than that are deleted with their events, asset rows and stored bytes.';
COMMENT ON COLUMN skiplock.content_jobs.finished_at IS
  'When the job reached done, failed or canceled. Job retention (SKIPLOCK_JOB_RETENTION_DAYS) deletes the job once this is older than the limit.';
COMMENT ON TABLE skiplock.content_job_events IS
  'Append-only log of every job state change, written by trigger on content_jobs. Read in (xid, id) order and only below the horizon pg_snapshot_xmin(pg_current_snapshot()), so no event ever appears behind one already read. Events of finished jobs are pruned after SKIPLOCK_EVENT_RETENTION_DAYS, and go with their job when job retention deletes it.';
COMMENT ON TABLE skiplock.assets IS
  'Files produced by jobs. The row commits in the same transaction as the job''s done, after the bytes are in storage. Job retention deletes the row with its job, then the bytes (a crash in between leaves an orphaned object, never a row naming missing bytes).';
