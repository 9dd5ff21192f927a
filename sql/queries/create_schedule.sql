-- create_schedule: a schedule for the company, unless it has %(max_schedules)s already (each
-- makes jobs by itself, so a tenant's are bounded). Run after lock_company in the same
-- transaction.
INSERT INTO skiplock.schedules (id, company_id, job_type, input, cron, interval_seconds,
                                timezone, source_task_id, priority, next_run_at)
SELECT %(id)s, %(company_id)s, %(job_type)s, %(input)s, %(cron)s, %(interval_seconds)s,
       %(timezone)s, %(source_task_id)s, %(priority)s, %(next_run_at)s
WHERE (SELECT count(*) FROM skiplock.schedules WHERE company_id = %(company_id)s)
      < %(max_schedules)s
RETURNING *
