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
)
SELECT count(*) FROM moved
