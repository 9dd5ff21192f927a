-- 0009.deliveries-without-job-fk: a delivery row no longer checks its job by foreign key.
-- depends: 0008.operations
--
-- Why: the outbox trigger writes a delivery in the statement that finishes the job, and the
-- foreign key made each one look the job up again and lock it FOR KEY SHARE: about 6 of the
-- 14 µs of Postgres a delivery added to a job's finish (bench/RESULTS.md, issue 16), on
-- the hot path of every company with a webhook. The job is known to exist (its event is
-- written in the same statement that changes it), so the check proved nothing there.
-- What the ON DELETE CASCADE did, job retention now does itself
-- (sql/queries/purge_finished_jobs.sql deletes a purged job's deliveries with its events).
-- A job deleted by hand keeps its deliveries, as it keeps its events: they are sent (the
-- change happened) and pruned after SKIPLOCK_EVENT_RETENTION_DAYS.
ALTER TABLE skiplock.webhook_deliveries DROP CONSTRAINT webhook_deliveries_job_id_fkey;
COMMENT ON COLUMN skiplock.webhook_deliveries.job_id IS
  'The job the event is about. No foreign key (it cost every finish a lookup and a lock of the job): job retention deletes a job''s deliveries with it; a job deleted by hand keeps them, as it keeps its events.';
