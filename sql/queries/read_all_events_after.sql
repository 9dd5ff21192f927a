-- read_all_events_after: every company's events after (after_xid, after_id), in (xid, id)
-- order, only below the horizon: what an API process's single notifier reads once per
-- doorbell and fans out to all its SSE clients.
WITH horizon AS MATERIALIZED (
    SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin
)
SELECT e.id, e.xid::text AS xid, e.company_id, e.job_id, e.type, e.payload, e.created_at,
       EXISTS (
           SELECT 1 FROM skiplock.content_job_events AS p WHERE p.xid >= h.xmin
       ) AS pending
FROM horizon AS h
LEFT JOIN LATERAL (
    SELECT ev.*
    FROM skiplock.content_job_events AS ev
    WHERE (ev.xid, ev.id) > (%(after_xid)s::xid8, %(after_id)s::bigint)
      AND ev.xid < h.xmin
    ORDER BY ev.xid, ev.id
    LIMIT %(limit)s
) AS e ON true
