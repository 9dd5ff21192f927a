-- retry_jobs_matching: one batch of a bulk retry (SPEC §8). Up to %(limit)s of a company's
-- failed or canceled jobs that match the filter go back to queued with retry_job.sql's
-- columns (attempts 0, run_at now, the last run's traces cleared; the queued event says
-- reason 'retry'). The caller repeats it until fewer than %(limit)s jobs matched: one short
-- transaction and one doorbell per batch (SPEC §2's event horizon).
-- %(cutoff)s is null for the first batch, which fixes it at its own start and returns it:
-- a job that finishes again after that (a retried job that fails at once) is not retried a
-- second time by the same bulk retry.
WITH reason AS (
    SELECT set_config('skiplock.change_reason', 'retry', true)
),
batch AS MATERIALIZED (
    -- No ORDER BY: the (company_id, status) index stops after %(limit)s rows, and each
    -- batch's rows leave the matching set, so the next batch finds the next ones.
    SELECT id
    FROM skiplock.content_jobs
    WHERE company_id = %(company_id)s
      AND status = ANY (%(statuses)s::text[])
      AND status IN ('failed', 'canceled')
      AND (%(job_type)s::text IS NULL OR job_type = %(job_type)s::text)
      AND (%(source_task_id)s::text IS NULL OR source_task_id = %(source_task_id)s::text)
      AND (finished_at IS NULL OR finished_at <= coalesce(%(cutoff)s::timestamptz, now()))
    LIMIT %(limit)s
),
retried AS (
    -- The status is checked again on the row as it is when locked. The SET is retry_job.sql's.
    UPDATE skiplock.content_jobs AS j
    SET status = 'queued',
        attempts = 0,
        run_at = now(),
        error_message = NULL,
        progress = NULL,
        started_at = NULL,
        finished_at = NULL,
        locked_by = NULL,
        lease_expires_at = NULL,
        updated_at = now()
    FROM batch, reason
    WHERE j.id = batch.id
      AND j.status = ANY (%(statuses)s::text[])
      AND j.status IN ('failed', 'canceled')
    RETURNING j.id
)
SELECT (SELECT count(*) FROM batch) AS matched,
       (SELECT count(*) FROM retried) AS changed,
       coalesce(%(cutoff)s::timestamptz, now()) AS cutoff
