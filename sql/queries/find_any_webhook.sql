-- find_any_webhook: a webhook by id alone, for operators (the API always scopes by company).
SELECT id, company_id, url, events, created_at
FROM skiplock.webhooks
WHERE id = %(webhook_id)s
