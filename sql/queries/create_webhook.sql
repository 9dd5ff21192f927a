-- create_webhook: a webhook for the company, unless it has %(max_webhooks)s already (each
-- event fans out to every webhook that wants it, inside the transaction that wrote the event,
-- so the fan-out is bounded). Run after lock_company in the same transaction.
INSERT INTO skiplock.webhooks (id, company_id, url, events, secret)
SELECT %(id)s, %(company_id)s, %(url)s, %(events)s::text[], %(secret)s
WHERE (SELECT count(*) FROM skiplock.webhooks WHERE company_id = %(company_id)s)
      < %(max_webhooks)s
RETURNING id, company_id, url, events, secret, created_at
