-- claim_due_schedules: lock up to %(limit)s schedules whose next run has passed, in a
-- transaction that enqueues their jobs and moves them on before it commits. SKIP LOCKED:
-- two workers never take the same row; a worker that reads a row another has just moved on
-- re-checks next_run_at on the new version and skips it. So a tick makes one job however
-- many workers run. now() is the transaction's start, the "now" of every tick decision.
SELECT s.id, s.company_id, s.cron, s.interval_seconds, s.timezone, s.next_run_at,
       now() AS now
FROM skiplock.schedules AS s
WHERE s.next_run_at <= now()
ORDER BY s.next_run_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
