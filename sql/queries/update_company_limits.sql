-- update_company_limits: set a company's max_running and/or max_queued (SPEC §3; null =
-- unlimited); a limit not named keeps its value. No row: no such company. Raising or
-- lifting max_running rings the company's job types' doorbells (trigger
-- companies_limits_ring), so workers claim its waiting jobs at once.
UPDATE skiplock.companies
SET max_running = CASE WHEN %(set_max_running)s THEN %(max_running)s::integer ELSE max_running END,
    max_queued = CASE WHEN %(set_max_queued)s THEN %(max_queued)s::integer ELSE max_queued END
WHERE id = %(company_id)s
RETURNING id, name, max_running, max_queued
