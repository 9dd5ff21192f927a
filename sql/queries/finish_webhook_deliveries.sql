-- finish_webhook_deliveries: the outcome of attempts, one statement per batch: delivered,
-- failed (attempts used up), or pending again with the next attempt's time. Only attempts
-- this worker still holds are written (same attempt, still locked by it): one whose lease
-- passed and that another worker took is left to that worker.
UPDATE skiplock.webhook_deliveries AS d
SET status = r.status,
    next_attempt_at = CASE WHEN r.status = 'pending' THEN r.next_attempt_at END,
    locked_by = NULL,
    lease_expires_at = NULL,
    last_status_code = r.status_code,
    last_error = r.error,
    delivered_at = CASE WHEN r.status = 'delivered' THEN r.finished_at END,
    updated_at = now()
FROM unnest(%(ids)s::uuid[], %(attempts)s::integer[], %(statuses)s::text[],
            %(next_attempt_ats)s::timestamptz[], %(status_codes)s::integer[],
            %(errors)s::text[], %(finished_ats)s::timestamptz[])
    AS r (id, attempt, status, next_attempt_at, status_code, error, finished_at)
WHERE d.id = r.id
  AND d.attempts = r.attempt
  AND d.locked_by = %(worker_id)s
  AND d.status = 'pending'
RETURNING d.id
