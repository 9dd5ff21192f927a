-- prune_webhook_deliveries: up to %(limit)s delivered or failed deliveries made more than
-- %(retention_days)s days ago (SKIPLOCK_EVENT_RETENTION_DAYS, as events); pending ones stay
-- until they finish. Repeated until fewer than %(limit)s go, like prune_events.
DELETE FROM skiplock.webhook_deliveries
WHERE id IN (
    SELECT id
    FROM skiplock.webhook_deliveries
    WHERE created_at < now() - make_interval(days => %(retention_days)s)
      AND status <> 'pending'
    LIMIT %(limit)s
)
