-- find_job_by_idempotency_key: the job a company's idempotency key was first used for.
SELECT id, status, created_at, idempotency_request_sha256
FROM skiplock.content_jobs
WHERE company_id = %(company_id)s AND idempotency_key = %(idempotency_key)s
