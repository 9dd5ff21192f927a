-- delete_schedule: the company's schedule; no tick after this makes a job (a worker that
-- holds the row for a tick finishes it first: DELETE waits for its lock).
DELETE FROM skiplock.schedules
WHERE id = %(schedule_id)s AND company_id = %(company_id)s
RETURNING id
