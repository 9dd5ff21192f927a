-- One worker round on the minimal queue (setup.sql): claim :batch rows with SKIP LOCKED in
-- one statement, then complete them by id in another (each its own commit, as in
-- skiplock_claim_complete.sql). With the trigger on, each statement writes one event row
-- per job and notifies once.
WITH claimed AS (
    UPDATE bench_queue SET status = 'running'
    WHERE id IN (
        SELECT id FROM bench_queue WHERE status = 'queued'
        ORDER BY id LIMIT :batch
        FOR UPDATE SKIP LOCKED
    )
    RETURNING id
)
SELECT coalesce(array_agg(id), '{}')::text AS ids FROM claimed
\gset
UPDATE bench_queue SET status = 'done' WHERE id = ANY (:ids::bigint[]);
