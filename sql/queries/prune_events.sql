-- prune_events: up to %(limit)s events older than the retention of jobs that have finished
-- (done, failed or canceled); a running job keeps its whole history. The worker repeats it
-- until fewer than %(limit)s rows go, so no transaction holds many row locks or the horizon.
DELETE FROM skiplock.content_job_events
WHERE id IN (
    SELECT e.id
    FROM skiplock.content_job_events AS e
    JOIN skiplock.content_jobs AS j ON j.id = e.job_id
    WHERE e.created_at < now() - make_interval(days => %(retention_days)s)
      AND j.status IN ('done', 'failed', 'canceled')
    LIMIT %(limit)s
)
