-- One worker round on narrow_jobs (setup.sql): claim :batch jobs of one company in claim
-- order with SKIP LOCKED, then finish them, each statement writing its own event rows (when
-- :events) in the same statement, as skiplock's claim_content_jobs()/finish_content_jobs()
-- do. No turn-taking walk: one company, the plain FIFO claim.
WITH claimed AS (
    UPDATE narrow_jobs AS j
    SET status = 'running', attempts = j.attempts + 1, locked_by = 'w', started_at = now(),
        updated_at = now(), lease_expires_at = now() + interval '30 s',
        last_event_xid = greatest(pg_current_xact_id(), j.last_event_xid)
    WHERE j.id IN (SELECT q.id FROM narrow_jobs AS q
                   WHERE q.company_id = :company::uuid AND q.job_type = 'noop'
                     AND q.status = 'queued' AND q.run_at <= now()
                   ORDER BY q.priority DESC, q.run_at, q.id
                   LIMIT :batch FOR UPDATE SKIP LOCKED)
    RETURNING j.*
),
logged AS (
    INSERT INTO narrow_events (xid, company_id, job_id, type, payload)
    SELECT c.last_event_xid, c.company_id, c.id, 'content_job.running',
           jsonb_build_object('status', 'running', 'attempt', c.attempts)
    FROM claimed AS c WHERE :events::boolean
)
SELECT coalesce(array_agg(id), '{}')::text AS ids FROM claimed
\gset
WITH finished AS (
    UPDATE narrow_jobs AS j
    SET status = 'done', locked_by = NULL, lease_expires_at = NULL, finished_at = now(),
        updated_at = now(), last_event_xid = greatest(pg_current_xact_id(), j.last_event_xid)
    WHERE j.id = ANY (:ids::uuid[]) AND j.locked_by = 'w' AND (j.status = 'running') IS TRUE
    RETURNING j.*
),
logged AS (
    INSERT INTO narrow_events (xid, company_id, job_id, type, payload)
    SELECT c.last_event_xid, c.company_id, c.id, 'content_job.done',
           jsonb_build_object('status', 'done', 'assetId', NULL)
    FROM finished AS c WHERE :events::boolean
)
SELECT count(*) FROM finished;
