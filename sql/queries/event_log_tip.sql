-- event_log_tip: the last event below the horizon, where a new notifier starts reading (the
-- events before it are history, replayed only to clients that ask with Last-Event-ID).
SELECT xid::text AS xid, id
FROM skiplock.content_job_events
WHERE xid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY xid DESC, id DESC
LIMIT 1
