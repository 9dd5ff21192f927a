-- company_stats: counts per job type and status, from the content_job_stats view, and
-- whether the type is paused for this company (paused for every company, or for this one).
SELECT s.job_type, s.status, s.count, s.oldest_created_at,
       EXISTS (
           SELECT 1 FROM skiplock.paused_job_types AS p
           WHERE p.job_type = s.job_type
             AND (p.company_id IS NULL OR p.company_id = %(company_id)s)
       ) AS paused
FROM skiplock.content_job_stats AS s
WHERE s.company_id = %(company_id)s
ORDER BY s.job_type, s.status
