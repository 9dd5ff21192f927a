-- count_jobs_matching: how many of a company's jobs a bulk cancel or retry with this filter
-- would change now (`skiplock jobs cancel|retry --dry-run`). Read-only.
SELECT count(*) AS count
FROM skiplock.content_jobs
WHERE company_id = %(company_id)s
  AND status = ANY (%(statuses)s::text[])
  AND (%(job_type)s::text IS NULL OR job_type = %(job_type)s::text)
  AND (%(source_task_id)s::text IS NULL OR source_task_id = %(source_task_id)s::text)
