-- list_jobs: a company's jobs, newest first, keyset-paged on (created_at, id) through
-- content_jobs_company_created_idx; optional filters. Fetches limit + 1 to know whether a
-- next page exists.
SELECT *
FROM skiplock.content_jobs
WHERE company_id = %(company_id)s
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(job_type)s::text IS NULL OR job_type = %(job_type)s::text)
  AND (%(source_task_id)s::text IS NULL OR source_task_id = %(source_task_id)s::text)
  AND (%(before_created_at)s::timestamptz IS NULL
       OR (created_at, id) < (%(before_created_at)s::timestamptz, %(before_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s
