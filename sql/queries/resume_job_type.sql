-- resume_job_type: claim a job type again. Without a company, every pause of the type goes
-- (the all-companies one and each company's); with one, only that company's. The table's
-- delete trigger rings content_jobs_queued, so idle workers claim at once.
DELETE FROM skiplock.paused_job_types
WHERE job_type = %(job_type)s
  AND (%(company_id)s::uuid IS NULL OR company_id = %(company_id)s::uuid)
