-- list_company_ids: every company's id, or only the one named (none when it does not exist).
-- Operators' bulk commands go company by company, so each batch stays on the
-- (company_id, status) index and rings one company's doorbell.
SELECT id
FROM skiplock.companies
WHERE %(company_id)s::uuid IS NULL OR id = %(company_id)s::uuid
ORDER BY created_at, id
