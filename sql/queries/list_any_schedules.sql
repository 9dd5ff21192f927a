-- list_any_schedules: schedules of one company or all, for operators, soonest first.
SELECT *
FROM skiplock.schedules
WHERE %(company_id)s::uuid IS NULL OR company_id = %(company_id)s::uuid
ORDER BY next_run_at, id
