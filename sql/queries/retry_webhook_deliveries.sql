-- retry_webhook_deliveries: a webhook's failed deliveries pending again, due now, their
-- attempts reset (an operator's `skiplock webhooks retry`, after a receiver's long outage).
UPDATE skiplock.webhook_deliveries
SET status = 'pending',
    attempts = 0,
    next_attempt_at = now(),
    locked_by = NULL,
    lease_expires_at = NULL,
    updated_at = now()
WHERE webhook_id = %(webhook_id)s
  AND status = 'failed'
RETURNING id
