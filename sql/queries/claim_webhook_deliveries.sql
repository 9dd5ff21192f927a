-- claim_webhook_deliveries: lease up to %(limit)s due deliveries to this worker for
-- %(lease_seconds)s. A worker killed mid-attempt leaves its deliveries to any worker once
-- their lease passes (at least once). The update changes no indexed column, so it is a
-- HOT update (the table's fillfactor leaves room): no index entry per claim.
-- The batch is spread over webhooks, one per webhook first, then a second, ...; and no
-- webhook gets more than %(per_webhook)s attempts in flight in this worker, counting
-- %(busy_counts)s already in flight for %(busy_webhooks)s: a receiver that hangs holds a
-- few slots, and other webhooks' deliveries keep flowing. A worker with a backlog of jobs
-- passes %(defer_seconds)s > 0: only deliveries due that long ago, so its jobs go first.
WITH busy AS (
    SELECT b.webhook_id, b.n
    FROM unnest(%(busy_webhooks)s::uuid[], %(busy_counts)s::integer[]) AS b (webhook_id, n)
),
candidates AS (
    -- The oldest due deliveries not in flight, of webhooks with room left.
    SELECT d.id, d.webhook_id, d.next_attempt_at
    FROM skiplock.webhook_deliveries AS d
    WHERE d.status = 'pending'
      AND d.next_attempt_at <= now() - make_interval(secs => %(defer_seconds)s)
      AND (d.lease_expires_at IS NULL OR d.lease_expires_at <= now())
      AND NOT EXISTS (
          SELECT 1 FROM busy WHERE busy.webhook_id = d.webhook_id AND busy.n >= %(per_webhook)s
      )
    ORDER BY d.next_attempt_at
    LIMIT 4 * %(limit)s
),
ranked AS (
    -- slot: this delivery's place among its webhook's attempts in flight if taken now.
    SELECT c.id, c.next_attempt_at,
           row_number() OVER (PARTITION BY c.webhook_id ORDER BY c.next_attempt_at, c.id)
               + coalesce(busy.n, 0) AS slot
    FROM candidates AS c
    LEFT JOIN busy ON busy.webhook_id = c.webhook_id
),
picked AS MATERIALIZED (
    -- Twice the batch, for room to skip rows another worker holds. Materialized, so the
    -- join below probes the primary key for these few rows whatever the statistics say (an
    -- earlier form joined the table to the window directly, and with a fresh table's
    -- statistics the planner re-ran the window once per due row: 86 ms a claim, not 2).
    SELECT r.id, r.slot, r.next_attempt_at
    FROM ranked AS r
    WHERE r.slot <= %(per_webhook)s
    ORDER BY r.slot, r.next_attempt_at
    LIMIT 2 * %(limit)s
),
claimable AS MATERIALIZED (
    -- Lock them once (SKIP LOCKED), so the UPDATE never touches more than the batch.
    SELECT d.id
    FROM picked AS p
    JOIN skiplock.webhook_deliveries AS d ON d.id = p.id
    WHERE d.status = 'pending'
      AND d.next_attempt_at <= now()
      AND (d.lease_expires_at IS NULL OR d.lease_expires_at <= now())
    ORDER BY p.slot, p.next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE skiplock.webhook_deliveries AS d
SET attempts = d.attempts + 1,
    locked_by = %(worker_id)s,
    lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
    updated_at = now()
FROM claimable, skiplock.webhooks AS w
WHERE d.id = claimable.id AND w.id = d.webhook_id
RETURNING d.id, d.webhook_id, d.company_id, d.event_id, d.job_id, d.type, d.payload,
          d.event_created_at, d.attempts, w.url, w.secret
