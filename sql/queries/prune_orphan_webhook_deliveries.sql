-- prune_orphan_webhook_deliveries: up to %(limit)s deliveries whose webhook is gone (deleted
-- in psql, or while the trigger was writing its delivery): the claim never takes them.
DELETE FROM skiplock.webhook_deliveries
WHERE id IN (
    SELECT d.id
    FROM skiplock.webhook_deliveries AS d
    WHERE NOT EXISTS (SELECT 1 FROM skiplock.webhooks AS w WHERE w.id = d.webhook_id)
    LIMIT %(limit)s
)
