-- cancel_job: queued or running -> canceled. A running job's worker notices within a
-- second and stops its handler. No row: the job is unknown or not cancelable.
UPDATE skiplock.content_jobs
SET status = 'canceled',
    finished_at = now(),
    locked_by = NULL,
    lease_expires_at = NULL,
    updated_at = now()
WHERE id = %(job_id)s AND company_id = %(company_id)s AND status IN ('queued', 'running')
RETURNING *
