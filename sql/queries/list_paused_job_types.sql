-- list_paused_job_types: the pauses of one job type, the all-companies one first.
SELECT job_type, company_id, paused_at
FROM skiplock.paused_job_types
WHERE job_type = %(job_type)s
ORDER BY company_id NULLS FIRST
