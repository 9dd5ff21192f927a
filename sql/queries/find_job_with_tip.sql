-- find_job_with_tip: a job as it is now and the position of its newest visible event, read
-- together: the per-job stream sends the job, then only events after that position.
SELECT j.*, tip.xid::text AS tip_xid, tip.id AS tip_id
FROM skiplock.content_jobs AS j
LEFT JOIN LATERAL (
    SELECT e.xid, e.id
    FROM skiplock.content_job_events AS e
    WHERE e.job_id = j.id
    ORDER BY e.xid DESC, e.id DESC
    LIMIT 1
) AS tip ON true
WHERE j.id = %(job_id)s AND j.company_id = %(company_id)s
