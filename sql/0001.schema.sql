-- 0001.schema: skiplock's tables, event log, triggers, view and enqueue function.
-- Everything lives in the schema `skiplock` (created by `skiplock migrate` before yoyo
-- runs, since yoyo keeps its own bookkeeping there too). Names are qualified so this file
-- does not depend on search_path.

-- ---------------------------------------------------------------------------------------
-- Tenants and their keys
-- ---------------------------------------------------------------------------------------
CREATE TABLE skiplock.companies (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL CONSTRAINT name_not_blank CHECK (btrim(name) <> ''),
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE skiplock.companies IS
  'Tenants. Every job, event, asset and key belongs to exactly one company; no company ever sees another''s.';

CREATE TABLE skiplock.api_keys (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    company_id uuid NOT NULL REFERENCES skiplock.companies (id) ON DELETE CASCADE,
    key_hash   text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX api_keys_company_idx ON skiplock.api_keys (company_id);
COMMENT ON TABLE skiplock.api_keys IS
  'API keys of a company. The key itself (sk_<id hex>_<secret>) is shown once at creation; only a hash is kept.';
COMMENT ON COLUMN skiplock.api_keys.key_hash IS
  'Hex sha256 of the key''s secret part. The key names its own id, so lookup is by id and the hash is compared in constant time.';
COMMENT ON COLUMN skiplock.api_keys.revoked_at IS
  'Set by `skiplock key revoke`; a revoked key (and every stream token made with it) no longer authenticates.';

CREATE TABLE skiplock.stream_tokens (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    api_key_id uuid NOT NULL REFERENCES skiplock.api_keys (id) ON DELETE CASCADE,
    company_id uuid NOT NULL REFERENCES skiplock.companies (id) ON DELETE CASCADE,
    token_hash text NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stream_tokens_expires_idx ON skiplock.stream_tokens (expires_at);
COMMENT ON TABLE skiplock.stream_tokens IS
  'Short-lived read-only tokens for browsers (EventSource and <img> cannot send headers), accepted as ?token= on SSE routes and asset content only. They die with the API key that made them.';
COMMENT ON COLUMN skiplock.stream_tokens.token_hash IS
  'Hex sha256 of the token''s secret part; the token itself is shown once.';

-- ---------------------------------------------------------------------------------------
-- Jobs
-- ---------------------------------------------------------------------------------------
CREATE TABLE skiplock.content_jobs (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    company_id      uuid NOT NULL REFERENCES skiplock.companies (id),
    job_type        text NOT NULL CONSTRAINT job_type_not_blank CHECK (btrim(job_type) <> ''),
    status          text NOT NULL DEFAULT 'queued'
        CONSTRAINT status_is_known CHECK (status IN ('queued', 'running', 'done', 'failed', 'canceled')),
    input           jsonb NOT NULL DEFAULT '{}'
        CONSTRAINT input_is_object CHECK (jsonb_typeof(input) = 'object'),
    result_asset_id uuid,
    error_message   text,
    source_task_id  text,
    priority        integer NOT NULL DEFAULT 0
        CONSTRAINT priority_in_range CHECK (priority BETWEEN -1000 AND 1000),
    run_at          timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0 CONSTRAINT attempts_not_negative CHECK (attempts >= 0),
    max_attempts    integer NOT NULL DEFAULT 3
        CONSTRAINT max_attempts_in_range CHECK (max_attempts BETWEEN 1 AND 100),
    timeout_seconds integer
        CONSTRAINT timeout_seconds_in_range CHECK (timeout_seconds BETWEEN 1 AND 604800),
    locked_by       text,
    lease_expires_at timestamptz,
    progress        jsonb CONSTRAINT progress_is_object CHECK (jsonb_typeof(progress) = 'object'),
    idempotency_key text,
    idempotency_request_sha256 text,
    started_at      timestamptz,
    finished_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT running_has_lease CHECK (status <> 'running' OR (locked_by IS NOT NULL AND lease_expires_at IS NOT NULL))
);
COMMENT ON TABLE skiplock.content_jobs IS
  'The queue. queued -> running -> done|failed; queued|running -> canceled; failed|canceled -> queued by retry. Any insert, status change or progress change (from skiplock or by hand) appends content_job_events rows and rings NOTIFY.';
COMMENT ON COLUMN skiplock.content_jobs.job_type IS 'Which registered handler runs the job (e.g. ''diagram'').';
COMMENT ON COLUMN skiplock.content_jobs.status IS 'queued | running | done | failed | canceled.';
COMMENT ON COLUMN skiplock.content_jobs.input IS 'The handler''s parameters, a JSON object validated against the type''s schema at submit time.';
COMMENT ON COLUMN skiplock.content_jobs.result_asset_id IS 'The asset the job produced (skiplock.assets.id); null until done, and for handlers that return None. No FK: assets may live in another store.';
COMMENT ON COLUMN skiplock.content_jobs.error_message IS 'Why the last attempt failed; kept while the job waits for its next attempt.';
COMMENT ON COLUMN skiplock.content_jobs.source_task_id IS 'The caller''s own reference (e.g. a task id in their system), copied onto the produced asset.';
COMMENT ON COLUMN skiplock.content_jobs.priority IS 'Higher runs first (-1000..1000); ties go to the earlier run_at, then the smaller id.';
COMMENT ON COLUMN skiplock.content_jobs.run_at IS 'Not claimed before this time. Set in the future to schedule; retries set it to now + backoff.';
COMMENT ON COLUMN skiplock.content_jobs.attempts IS 'Runs claimed so far (0 while never claimed). A job handed back on worker shutdown gets its attempt back.';
COMMENT ON COLUMN skiplock.content_jobs.max_attempts IS 'After this many attempts a failure is final (1..100).';
COMMENT ON COLUMN skiplock.content_jobs.timeout_seconds IS 'Per-job time limit for one attempt; null means the job type''s own timeout.';
COMMENT ON COLUMN skiplock.content_jobs.locked_by IS 'While running: the worker id (unique per worker process start) holding the job. Every worker write checks it, so a worker that lost the job changes nothing.';
COMMENT ON COLUMN skiplock.content_jobs.lease_expires_at IS 'While running: the worker renews this; once it passes, any worker may requeue the job (or fail it when attempts are used up).';
COMMENT ON COLUMN skiplock.content_jobs.progress IS 'Latest progress the handler reported: {"fraction": 0..1, "message": "..."}. Written at most once a second per job.';
COMMENT ON COLUMN skiplock.content_jobs.idempotency_key IS 'The Idempotency-Key header of the submitting request; unique per company when set.';
COMMENT ON COLUMN skiplock.content_jobs.idempotency_request_sha256 IS 'Hash of the canonical request the idempotency key was first used with; a replay with another body is refused (409).';
COMMENT ON COLUMN skiplock.content_jobs.started_at IS 'When the current (or last) attempt was claimed.';
COMMENT ON COLUMN skiplock.content_jobs.finished_at IS 'When the job reached done, failed or canceled.';

CREATE INDEX content_jobs_company_status_idx ON skiplock.content_jobs (company_id, status);
-- (created_at, id) is the list endpoint's keyset; id breaks ties between jobs of one instant.
CREATE INDEX content_jobs_company_created_idx ON skiplock.content_jobs (company_id, created_at, id);
-- The claim index holds only queued jobs, in claim order, so the claim stays an index scan
-- whose size is the backlog, however many finished jobs the table keeps.
CREATE INDEX content_jobs_claim_idx ON skiplock.content_jobs (priority DESC, run_at, id)
    WHERE status = 'queued';
-- The rescuer looks for running jobs whose lease has passed.
CREATE INDEX content_jobs_lease_idx ON skiplock.content_jobs (lease_expires_at)
    WHERE status = 'running';
CREATE UNIQUE INDEX content_jobs_idempotency_key_idx ON skiplock.content_jobs (company_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX content_jobs_source_task_idx ON skiplock.content_jobs (company_id, source_task_id)
    WHERE source_task_id IS NOT NULL;

-- ---------------------------------------------------------------------------------------
-- Assets: stored outputs
-- ---------------------------------------------------------------------------------------
CREATE TABLE skiplock.assets (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    company_id          uuid NOT NULL REFERENCES skiplock.companies (id),
    provider            text NOT NULL DEFAULT 'local',
    object_key          text NOT NULL,
    content_type        text NOT NULL,
    byte_size           bigint NOT NULL CONSTRAINT byte_size_not_negative CHECK (byte_size >= 0),
    sha256              text NOT NULL CONSTRAINT sha256_is_hex CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    original_filename   text,
    created_by_agent_id uuid,
    created_by_user_id  text,
    source_task_id      text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX assets_company_idx ON skiplock.assets (company_id, created_at);
CREATE INDEX assets_source_task_idx ON skiplock.assets (source_task_id);
COMMENT ON TABLE skiplock.assets IS
  'Files produced by jobs. The row commits in the same transaction as the job''s done, after the bytes are in storage.';
COMMENT ON COLUMN skiplock.assets.provider IS 'Which storage backend holds the bytes (''local'' = SKIPLOCK_STORAGE_DIR).';
COMMENT ON COLUMN skiplock.assets.object_key IS 'Where the backend keeps the bytes: {companyId}/generated/{yyyy}/{mm}/{dd}/{uuid}-{filename}.';
COMMENT ON COLUMN skiplock.assets.sha256 IS 'Hex sha256 of the bytes, computed while streaming them into storage; served as the ETag.';
COMMENT ON COLUMN skiplock.assets.source_task_id IS 'Copied from the job that produced the asset.';

-- ---------------------------------------------------------------------------------------
-- The event log
-- ---------------------------------------------------------------------------------------
CREATE TABLE skiplock.content_job_events (
    id         bigserial PRIMARY KEY,
    xid        xid8 NOT NULL,
    company_id uuid NOT NULL,
    job_id     uuid NOT NULL,
    type       text NOT NULL CONSTRAINT type_is_known CHECK (type IN (
        'content_job.queued', 'content_job.running', 'content_job.progress',
        'content_job.done', 'content_job.failed', 'content_job.canceled')),
    payload    jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
-- Readers walk (xid, id) per company, per job, or across all companies (the API's notifier).
CREATE INDEX content_job_events_order_idx ON skiplock.content_job_events (xid, id);
CREATE INDEX content_job_events_company_idx ON skiplock.content_job_events (company_id, xid, id);
CREATE INDEX content_job_events_job_idx ON skiplock.content_job_events (job_id, xid, id);
COMMENT ON TABLE skiplock.content_job_events IS
  'Append-only log of every job state change, written by trigger on content_jobs. Read in (xid, id) order and only below the horizon pg_snapshot_xmin(pg_current_snapshot()), so no event ever appears behind one already read. Events of finished jobs are pruned after SKIPLOCK_EVENT_RETENTION_DAYS.';
COMMENT ON COLUMN skiplock.content_job_events.id IS 'The SSE event id (Last-Event-ID). Drawn from a sequence, so NOT commit order: never read "id > last" alone.';
COMMENT ON COLUMN skiplock.content_job_events.xid IS
  'Order key: GREATEST(writing transaction''s id, the job''s previous event''s xid). Events sort by (xid, id).';
COMMENT ON COLUMN skiplock.content_job_events.type IS 'content_job.queued|running|progress|done|failed|canceled.';
COMMENT ON COLUMN skiplock.content_job_events.payload IS
  'status, plus: progress (progress), assetId (done), errorMessage (failed), reason/attempt/retryAt (queued again).';

-- ---------------------------------------------------------------------------------------
-- Workers
-- ---------------------------------------------------------------------------------------
CREATE TABLE skiplock.workers (
    id           text PRIMARY KEY,
    hostname     text NOT NULL,
    pid          integer NOT NULL,
    job_types    text[] NOT NULL DEFAULT '{}',
    concurrency  integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE skiplock.workers IS 'Worker processes that are (or were recently) alive; a row per process start.';
COMMENT ON COLUMN skiplock.workers.id IS 'Unique per process start; the value jobs carry in locked_by.';
COMMENT ON COLUMN skiplock.workers.last_seen_at IS 'Refreshed with every lease renewal; a stale value means the process is gone.';

-- ---------------------------------------------------------------------------------------
-- Triggers: Postgres itself records every state change.
-- ---------------------------------------------------------------------------------------

-- Row-level, BEFORE UPDATE, only for writes that did not set updated_at themselves (skiplock's
-- own statements do; a person in psql does not): keep updated_at, finished_at and the lease
-- columns coherent with the status, so a hand-made change behaves like skiplock's.
CREATE FUNCTION skiplock.content_jobs_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        IF NEW.status IN ('done', 'failed', 'canceled') AND NEW.finished_at IS NOT DISTINCT FROM OLD.finished_at THEN
            NEW.finished_at := now();
        END IF;
        IF NEW.status <> 'running' THEN
            NEW.locked_by := NULL;
            NEW.lease_expires_at := NULL;
        END IF;
        IF NEW.status = 'queued' THEN
            NEW.finished_at := NULL;
        END IF;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION skiplock.content_jobs_touch() IS
  'Keeps updated_at, finished_at and the lease columns right for changes made by hand.';
CREATE TRIGGER content_jobs_touch
    BEFORE UPDATE ON skiplock.content_jobs
    FOR EACH ROW
    WHEN (NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at)
    EXECUTE FUNCTION skiplock.content_jobs_touch();
COMMENT ON TRIGGER content_jobs_touch ON skiplock.content_jobs IS
  'Hand-made updates get updated_at/finished_at/lease columns kept coherent; skiplock''s own statements set updated_at and skip it.';

-- Statement-level with transition tables: a statement that changes 1,000 jobs costs one
-- INSERT ... SELECT and one NOTIFY per company (and per claimable job type), not 1,000 of each.
-- Postgres folds identical notifications of one transaction, so a transaction rings each
-- company's doorbell at most once.
CREATE FUNCTION skiplock.content_jobs_log_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
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
COMMENT ON FUNCTION skiplock.content_jobs_log_insert() IS
  'Appends a content_job_events row per inserted job and rings content_job_events (per company) and content_jobs_queued (per due job type).';
CREATE TRIGGER content_jobs_log_insert
    AFTER INSERT ON skiplock.content_jobs
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT
    EXECUTE FUNCTION skiplock.content_jobs_log_insert();
COMMENT ON TRIGGER content_jobs_log_insert ON skiplock.content_jobs IS
  'Event log + NOTIFY for new jobs, once per statement.';

-- The reason a job went back to queued is told by skiplock's own statements through the
-- transaction-local setting skiplock.change_reason (error, timeout, lease_expired, shutdown,
-- retry); a change made any other way (psql) is 'manual'. The trigger clears the setting so
-- a later statement of the same transaction does not inherit it.
CREATE FUNCTION skiplock.content_jobs_log_update() RETURNS trigger
LANGUAGE plpgsql AS $$
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
COMMENT ON FUNCTION skiplock.content_jobs_log_update() IS
  'Appends content_job_events rows for status and progress changes (reason from skiplock.change_reason, else manual) and rings content_job_events / content_jobs_queued.';
CREATE TRIGGER content_jobs_log_update
    AFTER UPDATE ON skiplock.content_jobs
    REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs
    FOR EACH STATEMENT
    EXECUTE FUNCTION skiplock.content_jobs_log_update();
COMMENT ON TRIGGER content_jobs_log_update ON skiplock.content_jobs IS
  'Event log + NOTIFY for status and progress changes, once per statement.';

-- ---------------------------------------------------------------------------------------
-- Stats view and the SQL enqueue function
-- ---------------------------------------------------------------------------------------
CREATE VIEW skiplock.content_job_stats AS
SELECT company_id, job_type, status, count(*) AS count, min(created_at) AS oldest_created_at
FROM skiplock.content_jobs
GROUP BY company_id, job_type, status;
COMMENT ON VIEW skiplock.content_job_stats IS
  'Per company, job type and status: how many jobs, and the oldest one''s created_at (how long the queue has been waiting).';

CREATE FUNCTION skiplock.enqueue_content_job(
    company_id uuid,
    job_type text,
    input jsonb DEFAULT '{}',
    source_task_id text DEFAULT NULL,
    priority integer DEFAULT 0,
    run_at timestamptz DEFAULT now()
) RETURNS uuid
LANGUAGE sql VOLATILE AS $$
    INSERT INTO skiplock.content_jobs (company_id, job_type, input, source_task_id, priority, run_at)
    VALUES ($1, $2, coalesce($3, '{}'), $4, coalesce($5, 0), coalesce($6, now()))
    RETURNING id
$$;
COMMENT ON FUNCTION skiplock.enqueue_content_job(uuid, text, jsonb, text, integer, timestamptz) IS
  'Enqueue a job from SQL or a trigger, inside the caller''s transaction; workers hear of it at commit. Returns the job id.';
