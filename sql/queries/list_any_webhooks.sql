-- list_any_webhooks: webhooks of one company or all, for operators, with what their
-- deliveries are doing: how many are pending, failed and delivered, and the last error.
SELECT w.id, w.company_id, w.url, w.events, w.created_at,
       count(d.id) FILTER (WHERE d.status = 'pending') AS pending,
       count(d.id) FILTER (WHERE d.status = 'failed') AS failed,
       count(d.id) FILTER (WHERE d.status = 'delivered') AS delivered,
       (SELECT l.last_error FROM skiplock.webhook_deliveries AS l
        WHERE l.webhook_id = w.id AND l.last_error IS NOT NULL
        ORDER BY l.updated_at DESC LIMIT 1) AS last_error
FROM skiplock.webhooks AS w
LEFT JOIN skiplock.webhook_deliveries AS d ON d.webhook_id = w.id
WHERE %(company_id)s::uuid IS NULL OR w.company_id = %(company_id)s::uuid
GROUP BY w.id
ORDER BY w.created_at, w.id
