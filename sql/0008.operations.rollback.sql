COMMENT ON TABLE skiplock.content_jobs IS
  'The queue. queued -> running -> done|failed; queued|running -> canceled; failed|canceled -> queued by retry. Any insert, status change or progress change (from skiplock or by hand) appends content_job_events rows and rings NOTIFY.';
COMMENT ON COLUMN skiplock.content_jobs.finished_at IS 'When the job reached done, failed or canceled.';
COMMENT ON TABLE skiplock.content_job_events IS
  'Append-only log of every job state change, written by trigger on content_jobs. Read in (xid, id) order and only below the horizon pg_snapshot_xmin(pg_current_snapshot()), so no event ever appears behind one already read. Events of finished jobs are pruned after SKIPLOCK_EVENT_RETENTION_DAYS.';
COMMENT ON TABLE skiplock.assets IS
  'Files produced by jobs. The row commits in the same transaction as the job''s done, after the bytes are in storage.';
