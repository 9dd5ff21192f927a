-- find_company_by_name: the oldest company of that name (skiplock dev looks up its 'dev' company).
SELECT id, name, created_at
FROM skiplock.companies
WHERE name = %(name)s
ORDER BY created_at, id
LIMIT 1
