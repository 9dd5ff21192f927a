-- One worker round on skiplock's schema: claim :batch due jobs (SKIP LOCKED) in one statement,
-- then finish them all by id in another. Each statement is its own notifying commit (one
-- doorbell per company), with the event-log rows written by the triggers.
WITH claimable AS MATERIALIZED (
    SELECT id FROM skiplock.content_jobs
    WHERE status = 'queued' AND run_at <= now() AND job_type = ANY ('{noop}')
    ORDER BY priority DESC, run_at, id
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE skiplock.content_jobs AS j
    SET status = 'running', attempts = j.attempts + 1, locked_by = 'bench-' || :client_id,
        started_at = now(), updated_at = now(), lease_expires_at = now() + interval '30 seconds'
    FROM claimable WHERE j.id = claimable.id
    RETURNING j.id
)
SELECT coalesce(array_agg(id), '{}')::text AS ids FROM claimed
\gset
UPDATE skiplock.content_jobs
SET status = 'done', finished_at = now(), updated_at = now()
WHERE id = ANY (:ids::uuid[]) AND locked_by = 'bench-' || :client_id AND status = 'running';
