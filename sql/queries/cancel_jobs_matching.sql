-- cancel_jobs_matching: one batch of a bulk cancel (SPEC §8). Up to %(limit)s of a
-- company's queued or running jobs that match the filter are canceled with cancel_job.sql's
-- columns, so they fire the same events and a running job's worker stops its handler within
-- a second. The caller repeats it until fewer than %(limit)s jobs matched: every batch is its
-- own short transaction (a bulk cancel of 100,000 jobs never holds the event horizon back,
-- SPEC §2) and rings the company's doorbell once.
-- %(cutoff)s is null for the first batch, which fixes it at its own start and returns it:
-- jobs created later are left alone, so a steady stream of submits cannot keep it going.
WITH batch AS MATERIALIZED (
    -- No ORDER BY: the (company_id, status) index stops after %(limit)s rows, and each
    -- batch's rows leave the matching set, so the next batch finds the next ones.
    SELECT id
    FROM skiplock.content_jobs
    WHERE company_id = %(company_id)s
      AND status = ANY (%(statuses)s::text[])
      AND status IN ('queued', 'running')
      AND (%(job_type)s::text IS NULL OR job_type = %(job_type)s::text)
      AND (%(source_task_id)s::text IS NULL OR source_task_id = %(source_task_id)s::text)
      AND created_at <= coalesce(%(cutoff)s::timestamptz, now())
    LIMIT %(limit)s
),
canceled AS (
    -- The status is checked again on the row as it is when locked: a job that finished
    -- meanwhile stays finished. The SET is cancel_job.sql's.
    UPDATE skiplock.content_jobs AS j
    SET status = 'canceled',
        finished_at = now(),
        locked_by = NULL,
        lease_expires_at = NULL,
        updated_at = now()
    FROM batch
    WHERE j.id = batch.id
      AND j.status = ANY (%(statuses)s::text[])
      AND j.status IN ('queued', 'running')
    RETURNING j.id
)
SELECT (SELECT count(*) FROM batch) AS matched,
       (SELECT count(*) FROM canceled) AS changed,
       coalesce(%(cutoff)s::timestamptz, now()) AS cutoff
