-- claim_jobs: lock up to %(limit)s due jobs of this worker's types and lease them, in claim
-- order (priority DESC, run_at, id). One statement for the whole batch: one notifying commit.
WITH claimable AS MATERIALIZED (
    -- MATERIALIZED: lock the set once, so the UPDATE never touches more than LIMIT rows.
    -- The partial index content_jobs_claim_idx holds only queued jobs in this order.
    SELECT id
    FROM skiplock.content_jobs
    WHERE status = 'queued'
      AND run_at <= now()
      AND job_type = ANY (%(job_types)s::text[])
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
