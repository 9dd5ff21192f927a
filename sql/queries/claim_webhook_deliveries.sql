-- claim_webhook_deliveries: lease up to %(limit)s due deliveries to this worker. The lease is
-- next_attempt_at itself (now + %(lease_seconds)s): a sender killed mid-attempt leaves the
-- delivery due again once it passes, and any worker retries it (at least once).
-- The batch is spread over webhooks, and a webhook never has more than %(per_webhook)s
-- attempts in flight across all workers: a receiver that hangs holds a few slots for 10 s
-- each, not every sender's, and other companies' deliveries keep flowing.
WITH sending AS (
    -- Attempts in flight now, per webhook (a lease that has passed is no longer in flight).
    SELECT webhook_id, count(*) AS n
    FROM skiplock.webhook_deliveries
    WHERE status = 'pending' AND locked_by IS NOT NULL AND next_attempt_at > now()
    GROUP BY webhook_id
),
candidates AS (
    -- The oldest due deliveries of webhooks with room left; at most %(scan)s are looked at.
    SELECT d.id, d.webhook_id, d.next_attempt_at
    FROM skiplock.webhook_deliveries AS d
    WHERE d.status = 'pending'
      AND d.next_attempt_at <= now()
      AND NOT EXISTS (
          SELECT 1 FROM sending AS s WHERE s.webhook_id = d.webhook_id AND s.n >= %(per_webhook)s
      )
    ORDER BY d.next_attempt_at
    LIMIT %(scan)s
),
ranked AS (
    -- slot: this delivery's place among its webhook's attempts in flight if taken now.
    SELECT c.id, c.next_attempt_at,
           row_number() OVER (PARTITION BY c.webhook_id ORDER BY c.next_attempt_at, c.id)
               + coalesce(s.n, 0) AS slot
    FROM candidates AS c
    LEFT JOIN sending AS s ON s.webhook_id = c.webhook_id
),
claimable AS MATERIALIZED (
    -- One per webhook first, then a second per webhook, ...: lock them once (SKIP LOCKED).
    SELECT d.id
    FROM skiplock.webhook_deliveries AS d
    JOIN ranked AS r ON r.id = d.id
    WHERE r.slot <= %(per_webhook)s
      AND d.status = 'pending'
      AND d.next_attempt_at <= now()
    ORDER BY r.slot, r.next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE skiplock.webhook_deliveries AS d
SET attempts = d.attempts + 1,
    locked_by = %(worker_id)s,
    next_attempt_at = now() + make_interval(secs => %(lease_seconds)s),
    updated_at = now()
FROM claimable, skiplock.webhooks AS w
WHERE d.id = claimable.id AND w.id = d.webhook_id
RETURNING d.id, d.webhook_id, d.company_id, d.event_id, d.job_id, d.type, d.payload,
          d.event_created_at, d.attempts, w.url, w.secret
