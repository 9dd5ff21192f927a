-- retry_job: failed or canceled -> queued, as new: attempts 0, run_at now, and the last
-- run's traces cleared. Its queued event says reason 'retry'.
WITH reason AS (
    SELECT set_config('skiplock.change_reason', 'retry', true)
)
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
FROM reason
WHERE j.id = %(job_id)s AND j.company_id = %(company_id)s AND j.status IN ('failed', 'canceled')
RETURNING j.*
