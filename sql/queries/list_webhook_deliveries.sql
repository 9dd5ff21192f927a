-- list_webhook_deliveries: a webhook's newest deliveries. One row per delivery; a webhook
-- with none gives one row whose delivery columns are null; another company's webhook (or
-- none) gives no row, so the route can answer 404 without a second query.
SELECT w.id AS webhook_id, d.id, d.event_id, d.job_id, d.type, d.status, d.attempts,
       d.last_status_code, d.last_error, d.next_attempt_at, d.delivered_at, d.created_at
FROM skiplock.webhooks AS w
LEFT JOIN LATERAL (
    SELECT *
    FROM skiplock.webhook_deliveries AS d
    WHERE d.webhook_id = w.id
      AND (%(status)s::text IS NULL OR d.status = %(status)s::text)
    ORDER BY d.created_at DESC, d.id DESC
    LIMIT %(limit)s
) AS d ON true
WHERE w.id = %(webhook_id)s AND w.company_id = %(company_id)s
ORDER BY d.created_at DESC, d.id DESC
