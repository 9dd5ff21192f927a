-- metrics_snapshot: the gauges /metrics reads from Postgres at scrape time, in one round trip
-- (one autocommit statement, no transaction id). Summed over all companies: /metrics carries
-- no tenant's ids or data.
SELECT
    -- Jobs per status, as {"queued": n, ...}; a status with no job is absent (0).
    -- One pass over content_jobs: the cost grows with the table, like content_job_stats.
    (SELECT coalesce(jsonb_object_agg(status, n), '{}'::jsonb)
     FROM (SELECT status, count(*) AS n FROM skiplock.content_jobs GROUP BY status) AS s
    ) AS jobs_by_status,
    -- Queued and due: what workers could claim right now (the partial claim index).
    (SELECT count(*)
     FROM skiplock.content_jobs
     WHERE status = 'queued' AND run_at <= now()
    ) AS queue_depth,
    -- How long the event horizon has been held back. The horizon is
    -- pg_snapshot_xmin(pg_current_snapshot()): the oldest transaction id still running,
    -- cluster-wide. Only transactions that hold an id (backend_xid: they wrote something)
    -- count; a read-only snapshot (backend_xmin alone) does not lower a snapshot's xmin, so
    -- it holds no event back. Prepared (two-phase) transactions hold their id too, without
    -- a backend. The holder of the oldest id is the horizon: its age is how long the
    -- events written since may have waited. Our own backend never holds an id here. Without
    -- pg_read_all_stats, other roles' xact_start is hidden and such holders read as 0.
    -- No holder at all: 0.
    coalesce((SELECT greatest(extract(epoch FROM now() - h.since), 0)::float8
     FROM (
         SELECT backend_xid AS xid, xact_start AS since
         FROM pg_stat_activity
         WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
         UNION ALL
         SELECT transaction, prepared
         FROM pg_prepared_xacts
     ) AS h
     ORDER BY age(h.xid) DESC
     LIMIT 1
    ), 0) AS event_horizon_age_seconds,
    -- The fraction of the 8 GB NOTIFY queue in use: at 1, every job change fails at commit.
    pg_notification_queue_usage() AS notification_queue_usage
