-- Rolls 0006.fair-claiming back to 0004's state: the FIFO claim index, the event triggers of
-- 0001 (with 0002's jit = off), no company limits, no last_event_xid. Events written meanwhile
-- stay valid: their xids are ordinary order keys.
DROP FUNCTION skiplock.claim_content_jobs(text, text[], integer, double precision, uuid);
DROP FUNCTION skiplock.running_allowance(uuid, integer);
DROP FUNCTION skiplock.finish_content_jobs(text, text, uuid[], integer[], text[], text[], timestamptz[], boolean[], jsonb[], uuid[], text[], text[], text[], bigint[], text[], text[]);

DROP TRIGGER companies_limits_ring ON skiplock.companies;
DROP FUNCTION skiplock.companies_limits_ring();

DROP TRIGGER content_jobs_xid ON skiplock.content_jobs;
DROP FUNCTION skiplock.content_jobs_xid();

DROP TRIGGER content_jobs_touch ON skiplock.content_jobs;
CREATE TRIGGER content_jobs_touch
    BEFORE UPDATE ON skiplock.content_jobs
    FOR EACH ROW
    WHEN (NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at)
    EXECUTE FUNCTION skiplock.content_jobs_touch();
COMMENT ON TRIGGER content_jobs_touch ON skiplock.content_jobs IS
  'Hand-made updates get updated_at/finished_at/lease columns kept coherent; skiplock''s own statements set updated_at and skip it.';

CREATE OR REPLACE FUNCTION skiplock.content_jobs_log_insert() RETURNS trigger
LANGUAGE plpgsql SET jit = off AS $$
BEGIN
    INSERT INTO skiplock.content_job_events (xid, company_id, job_id, type, payload)
    SELECT pg_current_xact_id(), n.company_id, n.id, 'content_job.' || n.status,
           jsonb_build_object('status', n.status, 'jobType', n.job_type)
    FROM new_jobs AS n
    ORDER BY n.created_at, n.id;

    PERFORM pg_notify('content_job_events', jsonb_build_object('companyId', c.company_id)::text)
    FROM (SELECT DISTINCT company_id FROM new_jobs) AS c;

    PERFORM pg_notify('content_jobs_queued', t.job_type)
    FROM (SELECT DISTINCT job_type FROM new_jobs WHERE status = 'queued' AND run_at <= now()) AS t;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION skiplock.content_jobs_log_update() RETURNS trigger
LANGUAGE plpgsql SET jit = off AS $$
DECLARE
    reason text := coalesce(nullif(current_setting('skiplock.change_reason', true), ''), 'manual');
BEGIN
    IF reason <> 'manual' THEN
        PERFORM set_config('skiplock.change_reason', '', true);
    END IF;

    WITH changed AS (
        SELECT n.*, o.status AS old_status, o.progress AS old_progress,
               o.attempts AS old_attempts, o.run_at AS old_run_at
        FROM new_jobs AS n
        JOIN old_jobs AS o ON o.id = n.id
        WHERE n.status IS DISTINCT FROM o.status
           OR (n.progress IS DISTINCT FROM o.progress AND n.progress IS NOT NULL)
    ),
    events AS (
        -- Up to two events per job, progress first: a progress value written together with
        -- the completion is its own event, before the terminal one.
        SELECT c.id AS job_id, c.company_id, e.ord, e.type, e.payload
        FROM changed AS c
        CROSS JOIN LATERAL (VALUES
            (1, 'content_job.progress',
             CASE WHEN c.progress IS DISTINCT FROM c.old_progress AND c.progress IS NOT NULL
                  THEN jsonb_build_object('status', c.status, 'progress', c.progress) END),
            (2, 'content_job.' || c.status,
             CASE WHEN c.status IS DISTINCT FROM c.old_status THEN
                  jsonb_build_object('status', c.status) || CASE c.status
                      WHEN 'queued' THEN jsonb_build_object(
                          'reason', reason, 'attempt', c.old_attempts,
                          'retryAt', to_char(c.run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
                      WHEN 'running' THEN jsonb_build_object('attempt', c.attempts)
                      WHEN 'done' THEN jsonb_build_object('assetId', c.result_asset_id)
                      WHEN 'failed' THEN jsonb_build_object('errorMessage', c.error_message)
                      ELSE '{}'::jsonb END
             END)
        ) AS e (ord, type, payload)
        WHERE e.payload IS NOT NULL
    )
    INSERT INTO skiplock.content_job_events (xid, company_id, job_id, type, payload)
    SELECT
        -- Raised to the job's previous event: a transaction that took its xid early and then
        -- waited on this job's row lock must still sort after the change it waited for.
        GREATEST(pg_current_xact_id(),
                 (SELECT max(p.xid) FROM skiplock.content_job_events AS p WHERE p.job_id = ev.job_id)),
        ev.company_id, ev.job_id, ev.type, ev.payload
    FROM events AS ev
    ORDER BY ev.job_id, ev.ord;

    PERFORM pg_notify('content_job_events', jsonb_build_object('companyId', c.company_id)::text)
    FROM (
        SELECT DISTINCT n.company_id
        FROM new_jobs AS n JOIN old_jobs AS o ON o.id = n.id
        WHERE n.status IS DISTINCT FROM o.status
           OR (n.progress IS DISTINCT FROM o.progress AND n.progress IS NOT NULL)
    ) AS c;

    -- Claimable now: queued and due, and was not both before (newly queued, or made due).
    PERFORM pg_notify('content_jobs_queued', t.job_type)
    FROM (
        SELECT DISTINCT n.job_type
        FROM new_jobs AS n JOIN old_jobs AS o ON o.id = n.id
        WHERE n.status = 'queued' AND n.run_at <= now()
          AND (o.status <> 'queued' OR o.run_at > now())
    ) AS t;
    RETURN NULL;
END
$$;

DROP INDEX skiplock.content_jobs_due_idx;
DROP INDEX skiplock.content_jobs_claim_idx;
CREATE INDEX content_jobs_claim_idx ON skiplock.content_jobs (priority DESC, run_at, id)
    WHERE status = 'queued';

ALTER TABLE skiplock.content_jobs DROP COLUMN last_event_xid;
DROP INDEX skiplock.companies_limited_idx;
ALTER TABLE skiplock.companies DROP COLUMN max_running, DROP COLUMN max_queued;

COMMENT ON FUNCTION skiplock.enqueue_content_job(uuid, text, jsonb, text, integer, timestamptz) IS
  'Enqueue a job from SQL or a trigger, inside the caller''s transaction; workers hear of it at commit. Returns the job id.';
COMMENT ON FUNCTION skiplock.enqueue_content_jobs(uuid, text, jsonb[], text[], integer, timestamptz) IS
  'Enqueue one job per element of inputs (source_task_ids, when given, pairs with inputs) in one statement, inside the caller''s transaction. Returns the job ids in input order.';

COMMENT ON FUNCTION skiplock.content_jobs_log_insert() IS
  'Appends a content_job_events row per inserted job and rings content_job_events (per company) and content_jobs_queued (per due job type).';
COMMENT ON FUNCTION skiplock.content_jobs_log_update() IS
  'Appends content_job_events rows for status and progress changes (reason from skiplock.change_reason, else manual) and rings content_job_events / content_jobs_queued.';
