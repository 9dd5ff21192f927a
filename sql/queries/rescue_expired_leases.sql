-- rescue_expired_leases: running jobs whose lease has passed (their worker died or lost
-- Postgres for longer than the lease) go back to queued at once, or to failed when their
-- attempts are used up. Any worker may run this; SKIP LOCKED so rescuers never queue up
-- behind each other, and at most %(limit)s rows per transaction.
WITH reason AS (
    -- Tells the event trigger why these jobs went back to queued.
    SELECT set_config('skiplock.change_reason', 'lease_expired', true)
),
expired AS MATERIALIZED (
    SELECT id
    FROM skiplock.content_jobs
    WHERE status = 'running' AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE skiplock.content_jobs AS j
SET status = CASE WHEN j.attempts >= j.max_attempts THEN 'failed' ELSE 'queued' END,
    error_message = CASE WHEN j.attempts >= j.max_attempts
        THEN format('lease expired: worker %%s stopped renewing it during attempt %%s of %%s',
                    j.locked_by, j.attempts, j.max_attempts)
        ELSE j.error_message END,
    finished_at = CASE WHEN j.attempts >= j.max_attempts THEN now() END,
    run_at = CASE WHEN j.attempts >= j.max_attempts THEN j.run_at ELSE now() END,
    locked_by = NULL,
    lease_expires_at = NULL,
    updated_at = now()
FROM expired, reason
WHERE j.id = expired.id
RETURNING j.id, j.status, j.attempts
