-- release_webhook_deliveries: attempts a worker stopped on shutdown, handed back: due as
-- before, the attempt refunded, for any worker to send at once (the receiver may have seen
-- it: at least once).
UPDATE skiplock.webhook_deliveries
SET attempts = attempts - 1,
    locked_by = NULL,
    lease_expires_at = NULL,
    updated_at = now()
WHERE id = ANY (%(ids)s::uuid[])
  AND locked_by = %(worker_id)s
  AND status = 'pending'
RETURNING id
