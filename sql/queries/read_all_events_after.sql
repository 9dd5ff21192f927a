-- read_all_events_after: every company's events after (after_xid, after_id), in (xid, id)
-- order, only below the horizon: what an API process's single notifier reads once per
-- doorbell and fans out to all its SSE clients.
-- `pending` (visible events wait above the horizon) is computed once, from the newest
-- xid (a backward step on content_job_events_order_idx). Written as EXISTS(xid >= horizon)
-- per row it scanned the whole log on every read: 130 ms per doorbell at 200,000 events.
WITH horizon AS MATERIALIZED (
    SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin
),
tip AS MATERIALIZED (
    SELECT coalesce(
        (SELECT max(p.xid) FROM skiplock.content_job_events AS p) >= (SELECT xmin FROM horizon),
        false
    ) AS pending
)
SELECT e.id, e.xid::text AS xid, e.company_id, e.job_id, e.type, e.payload, e.created_at,
       t.pending
FROM horizon AS h
CROSS JOIN tip AS t
LEFT JOIN LATERAL (
    SELECT ev.*
    FROM skiplock.content_job_events AS ev
    WHERE (ev.xid, ev.id) > (%(after_xid)s::xid8, %(after_id)s::bigint)
      AND ev.xid < h.xmin
    ORDER BY ev.xid, ev.id
    LIMIT %(limit)s
) AS e ON true
