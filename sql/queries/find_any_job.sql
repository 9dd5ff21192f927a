-- find_any_job: one job by its id, whatever its company. For operators (`skiplock jobs
-- show|cancel|retry JOB_ID`), who name a job without its company; the API never uses it.
SELECT * FROM skiplock.content_jobs WHERE id = %(job_id)s
