-- 0006.fair-claiming: companies take turns (SPEC §3), per-company limits, and a hot path that
-- writes its own events.
-- depends: 0005.storage
--
-- What changes, and why (the measurements are in README "Design" and bench/RESULTS.md):
-- - companies.max_running / max_queued: the per-company limits of SPEC §3.
-- - content_jobs.last_event_xid: the order key of the job's latest event, kept on the row.
--   The next event's xid is GREATEST(this transaction's id, it), read from the row version
--   the statement updates (the newest, even when it waited on the row lock), so no event
--   write needs to look up the job's previous events any more.
-- - The claim index is per (company, job type) and a second one answers "has this pair a
--   due job?" in one probe, so the claim can walk the companies with due work and take one
--   job from each per turn: claim_content_jobs().
-- - The worker's claim and finish statements write their events and ring their doorbells
--   themselves, in the same statement, and tell the statement-level event trigger so
--   (skiplock.events_written): one INSERT ... SELECT of the rows already in hand instead of a
--   trigger statement that joins the whole old and new row images again. Every other change
--   (psql, the API's cancel and retry, rescues, inserts) goes through the triggers as before.

-- ---------------------------------------------------------------------------------------
-- Per-company limits
-- ---------------------------------------------------------------------------------------
ALTER TABLE skiplock.companies
    ADD COLUMN max_running integer CONSTRAINT max_running_not_negative CHECK (max_running >= 0),
    ADD COLUMN max_queued integer CONSTRAINT max_queued_not_negative CHECK (max_queued >= 0);
COMMENT ON COLUMN skiplock.companies.max_running IS
  'At most this many of the company''s jobs run at once, across all workers (null = unlimited; 0 = none). Its other jobs stay queued and never hold up other companies. `skiplock company update ID --max-running N|none`.';
COMMENT ON COLUMN skiplock.companies.max_queued IS
  'A submit (or any insert) that would take the company''s queued jobs past this is refused: HTTP 429 quota_exceeded, or the max_queued check_violation in SQL (null = unlimited). `skiplock company update ID --max-queued N|none`.';

-- A claim looks up the companies that have a max_running once, in this small index, rather
-- than every company it serves in companies.
CREATE INDEX companies_limited_idx ON skiplock.companies (id, max_running)
    WHERE max_running IS NOT NULL;
COMMENT ON INDEX skiplock.companies_limited_idx IS
  'The companies with a max_running, for the claim.';

-- ---------------------------------------------------------------------------------------
-- The order key of a job's latest event, on the job
-- ---------------------------------------------------------------------------------------
-- No default at ADD time: a volatile default would rewrite the table. Existing rows keep
-- null, which is a safe floor: every transaction from now on has a larger id than any
-- event already written.
ALTER TABLE skiplock.content_jobs ADD COLUMN last_event_xid xid8;
ALTER TABLE skiplock.content_jobs ALTER COLUMN last_event_xid SET DEFAULT pg_current_xact_id();
COMMENT ON COLUMN skiplock.content_jobs.last_event_xid IS
  'The xid (order key) of the job''s latest event. The next event gets GREATEST(its transaction''s id, this), so a job''s events never sort out of order (SPEC §2). Kept by skiplock''s statements and, for any other change of status or progress, by the content_jobs_xid trigger.';

-- ---------------------------------------------------------------------------------------
-- Claim indexes: per (company, job type)
-- ---------------------------------------------------------------------------------------
DROP INDEX skiplock.content_jobs_claim_idx;
-- Within a (company, type): priority DESC, run_at, id, the claim order of SPEC §3. Queued
-- jobs only, so it is the size of the backlog, however many finished jobs the table keeps.
CREATE INDEX content_jobs_claim_idx ON skiplock.content_jobs
    (company_id, job_type, priority DESC, run_at, id) WHERE status = 'queued';
COMMENT ON INDEX skiplock.content_jobs_claim_idx IS
  'The jobs a claim takes from one (company, job type), in claim order: priority DESC, run_at, id. Queued jobs only.';
-- The first entry of a (company, type) is its earliest run_at: one probe says whether the
-- pair has a due job, and stepping from pair to pair walks the companies with queued work
-- without reading their backlogs (a paused or not-yet-due backlog costs one probe).
CREATE INDEX content_jobs_due_idx ON skiplock.content_jobs
    (company_id, job_type, run_at) WHERE status = 'queued';
COMMENT ON INDEX skiplock.content_jobs_due_idx IS
  'The (company, job type) pairs that have queued jobs, each with its earliest run_at first: the claim walks them one probe each.';

-- ---------------------------------------------------------------------------------------
-- Row triggers: updated_at and the lease for hand-made changes, last_event_xid for every
-- change that makes an event
-- ---------------------------------------------------------------------------------------
-- content_jobs_touch is 0004's, fired as before for updates that set neither updated_at nor
-- last_event_xid (a person's, not skiplock's; migrate's xid rebase sets only the latter).
DROP TRIGGER content_jobs_touch ON skiplock.content_jobs;
CREATE TRIGGER content_jobs_touch
    BEFORE UPDATE ON skiplock.content_jobs
    FOR EACH ROW
    WHEN (NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at
          AND NEW.last_event_xid IS NOT DISTINCT FROM OLD.last_event_xid)
    EXECUTE FUNCTION skiplock.content_jobs_touch();
COMMENT ON TRIGGER content_jobs_touch ON skiplock.content_jobs IS
  'Hand-made updates get updated_at/finished_at/lease columns kept coherent; skiplock''s own statements set updated_at and skip it.';

-- BEFORE ROW sees the newest version of the row, the one this update replaces (also after
-- waiting on its lock), so the new event's order key is exact. Named to fire after
-- content_jobs_touch (triggers of one kind fire in name order), whose WHEN must see the
-- row as the statement wrote it.
CREATE FUNCTION skiplock.content_jobs_xid() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.last_event_xid := greatest(pg_current_xact_id(), OLD.last_event_xid);
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION skiplock.content_jobs_xid() IS
  'Sets last_event_xid for a change of status or progress that did not set it itself: GREATEST(this transaction''s id, the job''s previous event''s).';
CREATE TRIGGER content_jobs_xid
    BEFORE UPDATE ON skiplock.content_jobs
    FOR EACH ROW
    WHEN ((NEW.status IS DISTINCT FROM OLD.status
           OR (NEW.progress IS DISTINCT FROM OLD.progress AND NEW.progress IS NOT NULL))
          AND NEW.last_event_xid IS NOT DISTINCT FROM OLD.last_event_xid)
    EXECUTE FUNCTION skiplock.content_jobs_xid();
COMMENT ON TRIGGER content_jobs_xid ON skiplock.content_jobs IS
  'Keeps last_event_xid, the order key of the next event, for changes made outside the worker''s claim and finish statements.';

-- ---------------------------------------------------------------------------------------
-- Statement triggers: the event log, doorbells, max_queued
-- ---------------------------------------------------------------------------------------
-- Inserts: max_queued first (a refused statement stores nothing), then an event per job
-- and the doorbells, as in 0001. The order key is the row's last_event_xid (its default is
-- the inserting transaction's id).
CREATE OR REPLACE FUNCTION skiplock.content_jobs_log_insert() RETURNS trigger
LANGUAGE plpgsql SET jit = off AS $$
DECLARE
    limited record;
    queued bigint;
BEGIN
    -- max_queued: one inserter at a time per limited company (until it commits), so two
    -- concurrent submits cannot both take the last place. Companies in id order: two
    -- statements that lock the same companies never deadlock. Each count is a fresh
    -- snapshot (this function is volatile) taken after the lock: it sees every insert
    -- committed before, and this statement's own rows.
    FOR limited IN
        SELECT c.id, c.max_queued
        FROM skiplock.companies AS c
        WHERE c.max_queued IS NOT NULL
          AND c.id IN (SELECT n.company_id FROM new_jobs AS n WHERE n.status = 'queued')
        ORDER BY c.id
    LOOP
        PERFORM pg_advisory_xact_lock(1936420716, hashtext(limited.id::text));
        SELECT count(*) INTO queued
        FROM (SELECT 1 FROM skiplock.content_jobs AS j
              WHERE j.company_id = limited.id AND j.status = 'queued'
              LIMIT limited.max_queued + 1) AS q;
        IF queued > limited.max_queued THEN
            RAISE EXCEPTION 'company % would have more than max_queued = % queued jobs',
                    limited.id, limited.max_queued
                USING ERRCODE = 'check_violation',
                      CONSTRAINT = 'max_queued',
                      DETAIL = 'Nothing was stored. The company''s queued jobs count against companies.max_queued until a worker claims them.',
                      HINT = 'Submit again once some have started, or raise the limit: skiplock company update <id> --max-queued N|none';
        END IF;
    END LOOP;

    INSERT INTO skiplock.content_job_events (xid, company_id, job_id, type, payload)
    SELECT coalesce(n.last_event_xid, pg_current_xact_id()), n.company_id, n.id,
           'content_job.' || n.status, jsonb_build_object('status', n.status, 'jobType', n.job_type)
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
  'Refuses an insert that takes a company past max_queued (check_violation max_queued), appends a content_job_events row per inserted job and rings content_job_events (per company) and content_jobs_queued (per due job type).';

-- Updates: as in 0001, except that
-- - a statement that wrote its own events (the worker's claim, finish, progress and lease
--   renewal set skiplock.events_written) is left alone: this trigger returns at once;
-- - the order key comes from the row (last_event_xid), not from a look-up of the job's
--   previous events;
-- - a job of a company with max_running that stops running frees a place: its type's
--   doorbell rings, so idle workers claim the company's next job at once.
CREATE OR REPLACE FUNCTION skiplock.content_jobs_log_update() RETURNS trigger
LANGUAGE plpgsql SET jit = off AS $$
DECLARE
    reason text := coalesce(nullif(current_setting('skiplock.change_reason', true), ''), 'manual');
BEGIN
    IF current_setting('skiplock.events_written', true) = 'on' THEN
        PERFORM set_config('skiplock.events_written', '', true);
        RETURN NULL;
    END IF;
    IF reason <> 'manual' THEN
        PERFORM set_config('skiplock.change_reason', '', true);
    END IF;

    WITH changed AS (
        SELECT n.*, o.status AS old_status, o.progress AS old_progress,
               o.attempts AS old_attempts
        FROM new_jobs AS n
        JOIN old_jobs AS o ON o.id = n.id
        WHERE n.status IS DISTINCT FROM o.status
           OR (n.progress IS DISTINCT FROM o.progress AND n.progress IS NOT NULL)
    ),
    events AS (
        -- Up to two events per job, progress first: a progress value written together with
        -- the completion is its own event, before the terminal one.
        SELECT c.id AS job_id, c.company_id, c.last_event_xid, e.ord, e.type, e.payload
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
        -- Set by content_jobs_xid (or by the statement itself). Null only when a statement
        -- cleared it in the same update: then look the job's previous events up.
        coalesce(ev.last_event_xid,
                 greatest(pg_current_xact_id(),
                          (SELECT max(p.xid) FROM skiplock.content_job_events AS p
                           WHERE p.job_id = ev.job_id))),
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

    -- Claimable now: queued and due, and was not both before (newly queued, or made due);
    -- or a place under a company's max_running was freed.
    PERFORM pg_notify('content_jobs_queued', t.job_type)
    FROM (
        SELECT DISTINCT n.job_type
        FROM new_jobs AS n JOIN old_jobs AS o ON o.id = n.id
        WHERE (n.status = 'queued' AND n.run_at <= now()
               AND (o.status <> 'queued' OR o.run_at > now()))
           OR (o.status = 'running' AND n.status <> 'running'
               AND EXISTS (SELECT 1 FROM skiplock.companies AS c
                           WHERE c.id = n.company_id AND c.max_running IS NOT NULL))
    ) AS t;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION skiplock.content_jobs_log_update() IS
  'Appends content_job_events rows for status and progress changes (reason from skiplock.change_reason, else manual) and rings content_job_events / content_jobs_queued; skips statements that set skiplock.events_written (they log themselves).';

-- ---------------------------------------------------------------------------------------
-- Changing a company's max_running rings its job types' doorbells
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION skiplock.companies_limits_ring() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- A raised or lifted limit makes queued jobs claimable: wake the workers of their types.
    PERFORM pg_notify('content_jobs_queued', t.job_type)
    FROM (
        SELECT DISTINCT j.job_type
        FROM new_companies AS n
        JOIN old_companies AS o ON o.id = n.id
        JOIN skiplock.content_jobs AS j ON j.company_id = n.id AND j.status = 'queued'
        WHERE n.max_running IS DISTINCT FROM o.max_running
          AND (n.max_running IS NULL OR n.max_running > coalesce(o.max_running, 0))
    ) AS t;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION skiplock.companies_limits_ring() IS
  'Rings content_jobs_queued for the queued job types of a company whose max_running was raised or lifted, so workers claim its jobs at once.';
CREATE TRIGGER companies_limits_ring
    AFTER UPDATE ON skiplock.companies
    REFERENCING OLD TABLE AS old_companies NEW TABLE AS new_companies
    FOR EACH STATEMENT
    EXECUTE FUNCTION skiplock.companies_limits_ring();
COMMENT ON TRIGGER companies_limits_ring ON skiplock.companies IS
  'Wakes workers when a company''s max_running is raised or lifted.';

-- ---------------------------------------------------------------------------------------
-- max_running: how many more of a company's jobs one claim may start
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION skiplock.running_allowance(company uuid, max_running integer) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    running integer;
BEGIN
    -- One claimer at a time per limited company, until it commits. Another claimer that
    -- finds the lock taken skips the company for this claim (it never waits): the company's
    -- jobs are being claimed anyway, and every other company's go on.
    IF NOT pg_try_advisory_xact_lock(1936420715, hashtext(company::text)) THEN
        RETURN 0;
    END IF;
    -- A fresh snapshot (volatile function, READ COMMITTED) taken after the lock: it counts
    -- every job claimed by the previous holder, which committed before releasing it. A job
    -- that finishes meanwhile only makes the count too high, never too low.
    SELECT count(*) INTO running
    FROM skiplock.content_jobs AS j
    WHERE j.company_id = company AND j.status = 'running';
    RETURN greatest(max_running - running, 0);
END
$$;
COMMENT ON FUNCTION skiplock.running_allowance(uuid, integer) IS
  'For claim_content_jobs: how many more jobs of this company may start now (max_running minus those running), 0 when another claimer holds the company. Takes an advisory transaction lock (1936420715, hashtext(company id)); call it in READ COMMITTED.';

-- ---------------------------------------------------------------------------------------
-- The claim: companies take turns
-- ---------------------------------------------------------------------------------------
-- The planner settings pin the plan to the index walk below whatever the statistics say
-- (statistics taken while a backlog was still in the future made it sort a whole company's
-- queue per claim: 19 ms instead of 0.3). They are the function's own, so a connection
-- pooler in transaction mode needs no session state. One generic plan, made once per
-- session: with custom plans the statement was planned again on every call (10% of a
-- drain's database time, perf).
CREATE FUNCTION skiplock.claim_content_jobs(
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
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_incremental_sort = off
SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    wanted integer := max_jobs;
    got integer;
BEGIN
    -- A turn gives each company with due work at most its share of the free slots. A
    -- company with less than its share leaves slots over: the next round offers them to the
    -- companies that still have jobs, in the same transaction (one commit, one round trip);
    -- only when one may have more (skiplock.claim_more), so a lone job is not followed by
    -- an empty round on the wake-up path.
    WHILE wanted > 0 LOOP
        RETURN QUERY
        WITH RECURSIVE
        -- 1. The (company, job type) pairs with queued jobs, one index probe each, in turn
        --    order: the companies after after_company (where this worker's last claim
        --    stopped), then from the first company. Each row carries the pair's earliest
        --    run_at (the first entry of content_jobs_due_idx for the pair).
        walk (company_id, job_type, run_at, wrapped, step) AS (
            (
                (SELECT q.company_id, q.job_type, q.run_at, false, 1
                 FROM skiplock.content_jobs AS q
                 WHERE q.status = 'queued'
                   AND q.company_id > coalesce(after_company, '00000000-0000-0000-0000-000000000000')
                 ORDER BY q.company_id, q.job_type, q.run_at
                 LIMIT 1)
                UNION ALL
                (SELECT q.company_id, q.job_type, q.run_at, true, 1
                 FROM skiplock.content_jobs AS q
                 WHERE q.status = 'queued'
                 ORDER BY q.company_id, q.job_type, q.run_at
                 LIMIT 1)
                LIMIT 1
            )
            UNION ALL
            SELECT n.company_id, n.job_type, n.run_at, n.wrapped, w.step + 1
            FROM walk AS w
            CROSS JOIN LATERAL (
                (SELECT q.company_id, q.job_type, q.run_at, w.wrapped AS wrapped
                 FROM skiplock.content_jobs AS q
                 WHERE q.status = 'queued'
                   AND (q.company_id, q.job_type) > (w.company_id, w.job_type)
                 ORDER BY q.company_id, q.job_type, q.run_at
                 LIMIT 1)
                UNION ALL
                -- Past the last pair: go round to the first one, once.
                (SELECT q.company_id, q.job_type, q.run_at, true
                 FROM skiplock.content_jobs AS q
                 WHERE q.status = 'queued' AND NOT w.wrapped
                 ORDER BY q.company_id, q.job_type, q.run_at
                 LIMIT 1)
                LIMIT 1
            ) AS n
            -- Round again up to after_company, never past it.
            WHERE NOT (n.wrapped AND n.company_id > coalesce(after_company, '00000000-0000-0000-0000-000000000000'))
        ),
        -- 2. The pairs this worker may claim from now: its types, due, not paused (for every
        --    company, or for this one). The walk stops once there are enough for max_jobs
        --    companies (a company has at most one pair per type).
        eligible AS MATERIALIZED (
            SELECT w.company_id, w.job_type, w.step
            FROM walk AS w
            WHERE w.job_type = ANY (job_types)
              AND w.run_at <= now()
              -- (The first test runs once: with no pause at all, no probe per pair.)
              AND (NOT EXISTS (SELECT 1 FROM skiplock.paused_job_types)
                   OR NOT EXISTS (
                       SELECT 1 FROM skiplock.paused_job_types AS p
                       WHERE p.job_type = w.job_type
                         AND (p.company_id IS NULL OR p.company_id = w.company_id)))
            LIMIT wanted * cardinality(job_types)
        ),
        -- 3. The turn order: each company at its first pair's place; the first max_jobs
        --    companies get a share of the free slots each (a turn each, as many turns as
        --    fit), capped by their max_running. Window functions, not joins: a join of two
        --    of these small sets walked one of them per row of the other.
        placed AS MATERIALIZED (
            SELECT e.company_id, e.job_type,
                   min(e.step) OVER (PARTITION BY e.company_id) AS first_step
            FROM eligible AS e
        ),
        shares AS MATERIALIZED (
            SELECT r.company_id, r.job_type, r.place,
                   ceil(wanted::numeric / max(r.place) OVER ())::integer AS share
            FROM (SELECT p.company_id, p.job_type,
                         dense_rank() OVER (ORDER BY p.first_step) AS place
                  FROM placed AS p) AS r
            WHERE r.place <= wanted
        ),
        capped AS MATERIALIZED (
            SELECT s.company_id, s.job_type, s.place,
                   CASE WHEN m.max_running IS NULL THEN s.share
                        ELSE least(s.share, skiplock.running_allowance(s.company_id, m.max_running))
                   END AS share
            FROM shares AS s
            -- companies_limited_idx: one small probe per pair, none when no company has one.
            LEFT JOIN LATERAL (
                SELECT c.max_running FROM skiplock.companies AS c
                WHERE c.id = s.company_id AND c.max_running IS NOT NULL
            ) AS m ON true
        ),
        -- 4. Lock each company's next jobs of each of its pairs, in its own order, SKIP LOCKED:
        --    jobs other claimers hold now are passed over, never waited for.
        locked AS MATERIALIZED (
            SELECT j.id, j.company_id, j.priority, j.run_at, s.place, s.share
            FROM capped AS s
            CROSS JOIN LATERAL (
                SELECT q.id, q.company_id, q.priority, q.run_at
                FROM skiplock.content_jobs AS q
                WHERE q.status = 'queued'
                  AND q.company_id = s.company_id
                  AND q.job_type = s.job_type
                  AND q.run_at <= now()
                ORDER BY q.priority DESC, q.run_at, q.id
                LIMIT s.share
                FOR UPDATE SKIP LOCKED
            ) AS j
            WHERE s.share > 0
        ),
        -- 5. Turns: every company's first job, then every company's second, ... in turn
        --    order; within a company (all its types together), priority DESC, run_at, id.
        chosen AS (
            SELECT r.id, r.turn, r.place
            FROM (
                SELECT l.id, l.place, l.share,
                       row_number() OVER (PARTITION BY l.company_id
                                          ORDER BY l.priority DESC, l.run_at, l.id) AS turn
                FROM locked AS l
            ) AS r
            WHERE r.turn <= r.share
            ORDER BY r.turn, r.place
            LIMIT wanted
        ),
        -- The UPDATE below writes its events itself: the event trigger leaves it alone
        -- (and consumes the setting). Set by the UPDATE's FROM, before its first row.
        written AS (
            SELECT set_config('skiplock.events_written', 'on', true)
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
            FROM chosen AS c, written
            WHERE j.id = c.id
            RETURNING j.*, c.turn, c.place
        ),
        logged AS (
            INSERT INTO skiplock.content_job_events (xid, company_id, job_id, type, payload)
            SELECT c.last_event_xid, c.company_id, c.id, 'content_job.running',
                   jsonb_build_object('status', 'running', 'attempt', c.attempts)
            FROM claimed AS c
            ORDER BY c.turn, c.place
        ),
        rung AS (
            SELECT pg_notify('content_job_events', jsonb_build_object('companyId', d.company_id)::text)
            FROM (SELECT DISTINCT company_id FROM claimed) AS d
        ),
        -- Worth another round? Only if a company took its whole share (it may have more),
        -- or companies were left out of this one's turn order.
        more AS (
            SELECT set_config('skiplock.claim_more', (
                EXISTS (SELECT 1 FROM locked AS l GROUP BY l.company_id, l.share
                        HAVING count(*) >= l.share)
                OR (SELECT count(DISTINCT p.company_id) FROM placed AS p) > wanted)::text,
                true)
        )
        SELECT c.id, c.company_id, c.job_type, c.status, c.input, c.source_task_id, c.priority,
               c.run_at, c.attempts, c.max_attempts, c.timeout_seconds, c.locked_by,
               c.lease_expires_at
        FROM claimed AS c
        -- Rings the doorbells (and says whether to go round again) before the rows go out.
        WHERE (SELECT count(*) FROM rung) >= 0 AND (SELECT count(*) FROM more) = 1
        ORDER BY c.turn, c.place;
        GET DIAGNOSTICS got = ROW_COUNT;
        EXIT WHEN got = 0 OR current_setting('skiplock.claim_more', true) IS DISTINCT FROM 'true';
        wanted := wanted - got;
    END LOOP;
END
$$;
COMMENT ON FUNCTION skiplock.claim_content_jobs(text, text[], integer, double precision, uuid) IS
  'Claims up to max_jobs due jobs of job_types for worker_id and leases them (SPEC §3): companies with due work take turns, one job each per turn, starting after after_company; within a company priority DESC, run_at, id; paused types and companies at max_running are passed over. Returns the jobs in turn order: pass the last one''s company_id as after_company next time. Writes their running events and doorbells itself.';

-- ---------------------------------------------------------------------------------------
-- The finish: a batch of outcomes in one statement
-- ---------------------------------------------------------------------------------------
-- A function for the same reason as the claim: its planner settings keep it a walk of the
-- primary key driven by the batch, whatever the statistics (stale ones made a join on the
-- batch scan all of content_jobs, or rebuild the batch once per job).
CREATE FUNCTION skiplock.finish_content_jobs(
    worker_id text,
    reason text,
    job_ids uuid[],
    attempts integer[],
    statuses text[],
    error_messages text[],
    run_ats timestamptz[],
    refunds boolean[],
    progress jsonb[],
    asset_ids uuid[],
    providers text[],
    object_keys text[],
    content_types text[],
    byte_sizes bigint[],
    sha256s text[],
    filenames text[]
) RETURNS SETOF uuid
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
SET enable_bitmapscan = off
SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
    WITH written AS (
        -- The UPDATE below writes its events itself: the event trigger leaves it alone
        -- (and consumes the setting). Set by the UPDATE's FROM, before its first row.
        SELECT set_config('skiplock.events_written', 'on', true)
    ),
    outcome AS (
        SELECT *
        FROM unnest(finish_content_jobs.job_ids, finish_content_jobs.attempts,
                    finish_content_jobs.statuses, finish_content_jobs.error_messages,
                    finish_content_jobs.run_ats, finish_content_jobs.refunds,
                    finish_content_jobs.asset_ids, finish_content_jobs.progress)
            AS o (id, attempt, status, error_message, run_at, refund, asset_id, progress)
    ),
    finished AS (
        UPDATE skiplock.content_jobs AS j
        SET status = o.status,
            attempts = CASE WHEN o.refund THEN j.attempts - 1 ELSE j.attempts END,
            error_message = CASE WHEN o.status = 'done' THEN NULL
                                 ELSE coalesce(o.error_message, j.error_message) END,
            result_asset_id = CASE WHEN o.status = 'done' THEN o.asset_id ELSE j.result_asset_id END,
            run_at = CASE WHEN o.status = 'queued' THEN coalesce(o.run_at, now()) ELSE j.run_at END,
            finished_at = CASE WHEN o.status IN ('done', 'failed') THEN now() END,
            progress = coalesce(o.progress, j.progress),
            locked_by = NULL,
            lease_expires_at = NULL,
            updated_at = now(),
            -- On the newest row version (also after waiting on its lock): the order key of
            -- this change's events (SPEC §2).
            last_event_xid = greatest(pg_current_xact_id(), j.last_event_xid)
        FROM outcome AS o, written
        -- Fenced: still this worker's, at the attempt it claimed, still running. IS TRUE
        -- hides the status test from index matching: as a plain status = 'running' it let
        -- stale statistics ("no job runs") walk every running job and join each to the
        -- whole batch, quadratic in the batch.
        WHERE j.id = o.id
          AND j.attempts = o.attempt
          AND j.locked_by = finish_content_jobs.worker_id
          AND (j.status = 'running') IS TRUE
        RETURNING j.id, j.company_id, j.job_type, j.status, j.run_at, j.error_message,
                  j.result_asset_id, j.source_task_id, j.progress, j.last_event_xid,
                  o.attempt, o.progress IS NOT NULL AS progressed
    ),
    logged AS (
        -- Up to two events per job, progress first: a progress value the handler reported
        -- last (the worker passes only one not yet written) is its own event, before the
        -- terminal one. A job queued again says why and which attempt ended.
        INSERT INTO skiplock.content_job_events (xid, company_id, job_id, type, payload)
        SELECT w.last_event_xid, w.company_id, w.id, e.type, e.payload
        FROM finished AS w
        CROSS JOIN LATERAL (VALUES
            (1, 'content_job.progress',
             CASE WHEN w.progressed
                  THEN jsonb_build_object('status', w.status, 'progress', w.progress) END),
            (2, 'content_job.' || w.status,
             jsonb_build_object('status', w.status) || CASE w.status
                 WHEN 'queued' THEN jsonb_build_object(
                     'reason', finish_content_jobs.reason, 'attempt', w.attempt,
                     'retryAt', to_char(w.run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
                 WHEN 'done' THEN jsonb_build_object('assetId', w.result_asset_id)
                 WHEN 'failed' THEN jsonb_build_object('errorMessage', w.error_message)
                 ELSE '{}'::jsonb END)
        ) AS e (ord, type, payload)
        WHERE e.payload IS NOT NULL
        ORDER BY w.id, e.ord
    ),
    stored AS (
        -- A done job's asset row, in the same transaction as its done.
        INSERT INTO skiplock.assets (id, company_id, provider, object_key, content_type,
                                     byte_size, sha256, original_filename, source_task_id)
        SELECT a.id, w.company_id, a.provider, a.object_key, a.content_type, a.byte_size,
               a.sha256, a.original_filename, w.source_task_id
        FROM unnest(finish_content_jobs.asset_ids, finish_content_jobs.providers,
                    finish_content_jobs.object_keys, finish_content_jobs.content_types,
                    finish_content_jobs.byte_sizes, finish_content_jobs.sha256s,
                    finish_content_jobs.filenames)
            AS a (id, provider, object_key, content_type, byte_size, sha256, original_filename)
        JOIN finished AS w ON w.result_asset_id = a.id
        WHERE a.id IS NOT NULL
        RETURNING provider, object_key
    ),
    uploaded AS (
        -- The asset row commits: its upload is no orphan, so its record goes with it
        -- (sql/0005.storage.sql). What stays recorded is an orphan for the sweep.
        DELETE FROM skiplock.asset_uploads AS u
        USING stored AS s
        WHERE u.provider = s.provider AND u.object_key = s.object_key
    ),
    rung AS (
        -- The companies' doorbells; and the types' where a job became claimable: queued
        -- again and due (a hand-back at shutdown), or a place freed under its company's
        -- max_running.
        SELECT pg_notify('content_job_events', jsonb_build_object('companyId', d.company_id)::text)
        FROM (SELECT DISTINCT w.company_id FROM finished AS w) AS d
        UNION ALL
        SELECT pg_notify('content_jobs_queued', t.job_type)
        FROM (
            SELECT DISTINCT p.job_type
            FROM (SELECT DISTINCT w.company_id, w.job_type,
                         w.status = 'queued' AND w.run_at <= now() AS due
                  FROM finished AS w) AS p
            WHERE p.due OR EXISTS (SELECT 1 FROM skiplock.companies AS c
                                   WHERE c.id = p.company_id AND c.max_running IS NOT NULL)
        ) AS t
    )
    SELECT w.id FROM finished AS w
    WHERE (SELECT count(*) FROM rung) >= 0;  -- rings the doorbells before the ids go out
END
$$;
COMMENT ON FUNCTION skiplock.finish_content_jobs(text, text, uuid[], integer[], text[], text[], timestamptz[], boolean[], jsonb[], uuid[], text[], text[], text[], bigint[], text[], text[]) IS
  'Writes the outcome of a batch of attempts held by worker_id (arrays in step, one element per job): done (with its asset row), failed, or queued again (reason: error, timeout, shutdown; a refund gives the attempt back). Rows no longer held at that attempt are left alone. Writes the events and doorbells itself; returns the ids written.';

-- ---------------------------------------------------------------------------------------
-- SQL enqueue: same signatures; max_queued is enforced by the insert trigger
-- ---------------------------------------------------------------------------------------
COMMENT ON FUNCTION skiplock.enqueue_content_job(uuid, text, jsonb, text, integer, timestamptz) IS
  'Enqueue a job from SQL or a trigger, inside the caller''s transaction; workers hear of it at commit. Returns the job id. Past the company''s max_queued it raises check_violation (constraint max_queued) and inserts nothing.';
COMMENT ON FUNCTION skiplock.enqueue_content_jobs(uuid, text, jsonb[], text[], integer, timestamptz) IS
  'Enqueue one job per element of inputs (source_task_ids, when given, pairs with inputs) in one statement, inside the caller''s transaction. Returns the job ids in input order. A batch that would take the company past max_queued raises check_violation (constraint max_queued) and inserts none.';
