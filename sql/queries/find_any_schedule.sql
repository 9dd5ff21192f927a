-- find_any_schedule: a schedule by id alone, for operators.
SELECT *
FROM skiplock.schedules
WHERE id = %(schedule_id)s
