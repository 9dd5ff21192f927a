-- find_event_position: the (xid, id) order key of one event of a company (and, when given, of
-- one job), to resume a stream after it. No row: the event is unknown or pruned.
SELECT xid::text AS xid, id
FROM skiplock.content_job_events
WHERE id = %(event_id)s
  AND company_id = %(company_id)s
  AND (%(job_id)s::uuid IS NULL OR job_id = %(job_id)s::uuid)
