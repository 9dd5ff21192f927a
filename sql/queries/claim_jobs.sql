-- claim_jobs: lock up to %(limit)s due jobs of this worker's types and lease them, in claim
-- order (priority DESC, run_at, id), skipping job types paused for every company or for the
-- job's own (paused_job_types). One statement for the whole batch: one notifying commit.
WITH claimable AS MATERIALIZED (
    -- MATERIALIZED: lock the set once, so the UPDATE never touches more than LIMIT rows.
    -- The partial index content_jobs_claim_idx holds only queued jobs in this order.
    SELECT id
    FROM skiplock.content_jobs
    WHERE status = 'queued'
      AND run_at <= now()
      AND job_type = ANY (%(job_types)s::text[])
      AND NOT EXISTS (
          SELECT 1 FROM skiplock.paused_job_types AS p
          WHERE p.job_type = content_jobs.job_type
            AND (p.company_id IS NULL OR p.company_id = content_jobs.company_id)
      )
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE skiplock.content_jobs AS j
SET status = 'running',
    attempts = j.attempts + 1,
    locked_by = %(worker_id)s,
    started_at = now(),
    updated_at = now(),
    finished_at = NULL,
    lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
FROM claimable
WHERE j.id = claimable.id
RETURNING j.*
