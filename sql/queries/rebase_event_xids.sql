-- rebase_event_xids: after a dump and restore into another cluster, event xids may lie above
-- every xid this cluster will hand out soon, so new events would sort before them and they
-- would stay above the read horizon. Shift all of them down by one offset (order kept) so the
-- largest lands just below this transaction's xid. Returns how many rows moved (0 normally).
WITH bounds AS (
    SELECT max(xid) AS top, pg_current_xact_id() AS current_xid
    FROM skiplock.content_job_events
),
shift AS (
    -- Only when some event claims an xid this cluster has not reached yet.
    SELECT top::text::numeric - current_xid::text::numeric + 1 AS amount
    FROM bounds
    WHERE top >= current_xid
),
moved AS (
    UPDATE skiplock.content_job_events AS e
    -- 3 is the first normal transaction id; anything older collapses onto it.
    SET xid = greatest(e.xid::text::numeric - shift.amount, 3)::text::xid8
    FROM shift
    RETURNING 1
),
forgotten AS (
    -- Jobs keep their latest event's xid (content_jobs.last_event_xid), the floor of their
    -- next event's: from the old cluster it may lie above every xid of this one. Once every
    -- event is below this transaction's id, null is a safe floor. (A job's latest event is
    -- never newer than the log's newest, so this only has work when the log moved or is
    -- empty; setting only last_event_xid fires no event and leaves updated_at alone.)
    UPDATE skiplock.content_jobs AS j
    SET last_event_xid = NULL
    FROM bounds
    WHERE (bounds.top IS NULL OR bounds.top >= bounds.current_xid)
      AND j.last_event_xid >= bounds.current_xid
)
SELECT count(*) FROM moved
