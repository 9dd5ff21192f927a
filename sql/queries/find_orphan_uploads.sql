-- find_orphan_uploads: recorded uploads whose asset row can no longer commit and whose upload
-- is surely over, on the backends this worker can reach, oldest first.
SELECT u.provider, u.object_key, u.worker_id, u.started_at
FROM skiplock.asset_uploads AS u
WHERE u.provider = ANY (%(providers)s::text[])
  -- The attempt is over: finish_jobs would have deleted this row with the asset row's
  -- insert, so no asset row refers to the object and none ever will.
  AND NOT EXISTS (
      SELECT 1 FROM skiplock.content_jobs AS j
      WHERE j.id = u.job_id AND j.attempts = u.attempt AND j.locked_by = u.worker_id
        AND j.status = 'running')
  -- And nobody is still writing it: it is this worker's own and not among its uploads in
  -- flight, or its worker is gone (exited, or not seen for %(worker_gone_seconds)s s, while
  -- a live worker refreshes last_seen_at every third of its lease).
  AND (
      (u.worker_id = %(worker_id)s AND NOT (u.object_key = ANY (%(in_flight)s::text[])))
      OR NOT EXISTS (
          SELECT 1 FROM skiplock.workers AS w
          WHERE w.id = u.worker_id
            AND w.last_seen_at > now() - make_interval(secs => %(worker_gone_seconds)s)))
ORDER BY u.started_at
LIMIT %(limit)s
