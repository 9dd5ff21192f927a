-- list_schedules: a company's schedules, oldest first (capped per company).
SELECT *
FROM skiplock.schedules
WHERE company_id = %(company_id)s
ORDER BY created_at, id
