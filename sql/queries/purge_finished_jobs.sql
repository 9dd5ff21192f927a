-- purge_finished_jobs: one batch of job retention (SKIPLOCK_JOB_RETENTION_DAYS, SPEC §8).
-- Up to %(limit)s finished (done, failed or canceled) jobs whose finished_at is older than
-- %(retention_seconds)s are deleted with their events, webhook deliveries and asset rows,
-- in one transaction. Returns how many jobs and events went and where each asset's bytes
-- are: the caller deletes those only after this commits, so a crash in between leaves an
-- orphaned object, never a row naming no bytes.
-- The worker repeats it until fewer than %(limit)s jobs go: no transaction holds many row
-- locks or the event horizon (SPEC §2).
WITH doomed AS MATERIALIZED (
    -- Company by company, on content_jobs_company_created_idx: a job that finished before
    -- the cutoff was created before it too, so each company's scan reads only jobs older
    -- than the cutoff and stops at %(limit)s, however many newer jobs the table keeps (no
    -- index on finished_at: it would cost every job's completion a write).
    -- SKIP LOCKED: purgers on several workers share the work, and a job being changed right
    -- now (a retry) waits for the next run, its status checked again under the lock.
    SELECT j.id, j.result_asset_id
    FROM skiplock.companies AS c
    CROSS JOIN LATERAL (
        SELECT id, result_asset_id
        FROM skiplock.content_jobs
        WHERE company_id = c.id
          AND created_at < now() - make_interval(secs => %(retention_seconds)s::float8)
          AND status IN ('done', 'failed', 'canceled')
          AND finished_at < now() - make_interval(secs => %(retention_seconds)s::float8)
        ORDER BY created_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS j
    LIMIT %(limit)s
),
events AS (
    DELETE FROM skiplock.content_job_events AS e
    USING doomed
    WHERE e.job_id = doomed.id
    RETURNING 1
),
deliveries AS (
    -- No foreign key does it (sql/0009): on webhook_deliveries_job_idx.
    DELETE FROM skiplock.webhook_deliveries AS d
    USING doomed
    WHERE d.job_id = doomed.id
),
assets AS (
    DELETE FROM skiplock.assets AS a
    USING doomed
    WHERE a.id = doomed.result_asset_id
    RETURNING a.provider, a.object_key
),
jobs AS (
    DELETE FROM skiplock.content_jobs AS j
    USING doomed
    WHERE j.id = doomed.id
    RETURNING 1
)
SELECT (SELECT count(*) FROM jobs) AS jobs,
       (SELECT count(*) FROM events) AS events,
       (SELECT coalesce(jsonb_agg(jsonb_build_array(provider, object_key)), '[]') FROM assets)
           AS objects
