-- delete_webhook: the company's webhook and all its deliveries, pending ones included:
-- nothing more is sent to it. (webhook_deliveries has no foreign key to webhooks, see
-- sql/0007, so its rows go here, in the same statement.)
WITH gone AS (
    DELETE FROM skiplock.webhooks
    WHERE id = %(webhook_id)s AND company_id = %(company_id)s
    RETURNING id
),
deliveries AS (
    DELETE FROM skiplock.webhook_deliveries
    WHERE webhook_id IN (SELECT id FROM gone)
)
SELECT id FROM gone
