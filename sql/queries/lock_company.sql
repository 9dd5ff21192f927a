-- lock_company: hold the company's row until the transaction ends, so changes that count a
-- company's rows (its webhooks, its schedules, against their caps) see each other. NO KEY
-- UPDATE: the foreign-key checks of the company's job inserts (KEY SHARE) never wait on it.
SELECT id
FROM skiplock.companies
WHERE id = %(company_id)s
FOR NO KEY UPDATE
