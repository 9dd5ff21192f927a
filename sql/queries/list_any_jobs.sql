-- list_any_jobs: the newest jobs of every company, or of one, with optional filters. For
-- operators (`skiplock jobs list`), run once per command: without a company it sorts the
-- matching rows (a top-N sort, no index needed), which is fine by hand but not per request
-- (the API pages through list_jobs.sql instead).
SELECT *
FROM skiplock.content_jobs
WHERE (%(company_id)s::uuid IS NULL OR company_id = %(company_id)s::uuid)
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(job_type)s::text IS NULL OR job_type = %(job_type)s::text)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s
