-- company_stats: counts per job type and status, from the content_job_stats view.
SELECT job_type, status, count, oldest_created_at
FROM skiplock.content_job_stats
WHERE company_id = %(company_id)s
ORDER BY job_type, status
