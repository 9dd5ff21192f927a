ALTER FUNCTION skiplock.content_jobs_log_update() RESET jit;
ALTER FUNCTION skiplock.content_jobs_log_insert() RESET jit;
DROP INDEX skiplock.content_job_events_created_brin;
