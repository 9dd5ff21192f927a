-- read_events_after: the events of one company or one job ({scope} is company_id or job_id,
-- an identifier filled in by store.py) after the position (after_xid, after_id), in
-- (xid, id) order, and only those below the horizon pg_snapshot_xmin(pg_current_snapshot()):
-- every transaction that could still add an event below it has ended, so nothing can ever
-- appear behind what this returns. Horizon and rows come from this one statement's snapshot
-- (run it in autocommit). `pending` says visible events wait above the horizon: re-read soon.
WITH horizon AS MATERIALIZED (
    SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin
),
tip AS MATERIALIZED (
    -- Once per read, not per row: an index range scan on ({scope}, xid, id).
    SELECT EXISTS (
        SELECT 1 FROM skiplock.content_job_events AS p, horizon
        WHERE p.{scope} = %(scope_id)s AND p.xid >= horizon.xmin
    ) AS pending
)
SELECT e.id, e.xid::text AS xid, e.company_id, e.job_id, e.type, e.payload, e.created_at,
       t.pending
FROM horizon AS h
CROSS JOIN tip AS t
LEFT JOIN LATERAL (
    SELECT ev.*
    FROM skiplock.content_job_events AS ev
    WHERE ev.{scope} = %(scope_id)s
      AND (ev.xid, ev.id) > (%(after_xid)s::xid8, %(after_id)s::bigint)
      AND ev.xid < h.xmin
    ORDER BY ev.xid, ev.id
    LIMIT %(limit)s
) AS e ON true
