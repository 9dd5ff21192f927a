-- The claim skiplock had before 0006.fair-claiming, for the noisy-neighbour bench only: one
-- queue for everyone, first in first out (priority DESC, run_at, id) across companies, so a
-- company's lone job waits behind another's whole backlog. `bench/worker/run.py` installs it
-- into its throwaway database in place of claim_content_jobs(), with the index it walks;
-- the rest (events written by the statement, doorbells, the lease) is the shipped claim's.
CREATE INDEX bench_fifo_claim_idx ON skiplock.content_jobs (priority DESC, run_at, id)
    WHERE status = 'queued';

CREATE OR REPLACE FUNCTION skiplock.claim_content_jobs(
    worker_id text,
    job_types text[],
    max_jobs integer,
    lease_seconds double precision,
    after_company uuid DEFAULT NULL
) RETURNS TABLE (
    id uuid,
    company_id uuid,
    job_type text,
    status text,
    input jsonb,
    source_task_id text,
    priority integer,
    run_at timestamptz,
    attempts integer,
    max_attempts integer,
    timeout_seconds integer,
    locked_by text,
    lease_expires_at timestamptz
)
LANGUAGE plpgsql VOLATILE
-- The same plan pins as the shipped claim (a sort of the whole queue otherwise, with the
-- statistics the bench takes while its backlog is parked in the future).
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_incremental_sort = off
SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH written AS (
        SELECT set_config('skiplock.events_written', 'on', true)
    ),
    claimable AS MATERIALIZED (
        SELECT q.id
        FROM skiplock.content_jobs AS q
        WHERE q.status = 'queued'
          AND q.run_at <= now()
          AND q.job_type = ANY (job_types)
          AND NOT EXISTS (
              SELECT 1 FROM skiplock.paused_job_types AS p
              WHERE p.job_type = q.job_type
                AND (p.company_id IS NULL OR p.company_id = q.company_id))
        ORDER BY q.priority DESC, q.run_at, q.id
        LIMIT max_jobs
        FOR UPDATE SKIP LOCKED
    ),
    claimed AS (
        UPDATE skiplock.content_jobs AS j
        SET status = 'running',
            attempts = j.attempts + 1,
            locked_by = worker_id,
            started_at = now(),
            updated_at = now(),
            finished_at = NULL,
            lease_expires_at = now() + make_interval(secs => lease_seconds),
            last_event_xid = greatest(pg_current_xact_id(), j.last_event_xid)
        FROM claimable AS c, written
        WHERE j.id = c.id
        RETURNING j.*
    ),
    logged AS (
        INSERT INTO skiplock.content_job_events (xid, company_id, job_id, type, payload)
        SELECT c.last_event_xid, c.company_id, c.id, 'content_job.running',
               jsonb_build_object('status', 'running', 'attempt', c.attempts)
        FROM claimed AS c
    ),
    rung AS (
        SELECT pg_notify('content_job_events', jsonb_build_object('companyId', d.company_id)::text)
        FROM (SELECT DISTINCT company_id FROM claimed) AS d
    )
    SELECT c.id, c.company_id, c.job_type, c.status, c.input, c.source_task_id, c.priority,
           c.run_at, c.attempts, c.max_attempts, c.timeout_seconds, c.locked_by,
           c.lease_expires_at
    FROM claimed AS c
    WHERE (SELECT count(*) FROM rung) >= 0
    ORDER BY c.priority DESC, c.run_at, c.id;
END
$$;
