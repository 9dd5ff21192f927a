-- delete_webhook: the company's webhook and (ON DELETE CASCADE) its deliveries, pending ones
-- included: nothing more is sent to it.
DELETE FROM skiplock.webhooks
WHERE id = %(webhook_id)s AND company_id = %(company_id)s
RETURNING id
