-- list_webhooks: a company's webhooks, oldest first (at most a few dozen: they are capped).
SELECT id, company_id, url, events, created_at
FROM skiplock.webhooks
WHERE company_id = %(company_id)s
ORDER BY created_at, id
