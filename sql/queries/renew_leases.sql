-- renew_leases: extend, in one statement, the lease of every job this worker holds, and
-- return the ones it still holds. A job missing from the result was rescued, canceled or
-- claimed again by another worker: its handler must stop. Fenced by locked_by and by the
-- attempt each job was claimed at, so a worker that lost a job changes nothing.
-- The same statement refreshes the worker's workers.last_seen_at (even with no job held).
-- A renewal changes no status and no progress: it makes no event, and tells the event
-- trigger so (skiplock.events_written) rather than have it compare the rows.
WITH seen AS (
    UPDATE skiplock.workers SET last_seen_at = now() WHERE id = %(worker_id)s
),
written AS (
    SELECT set_config('skiplock.events_written', 'on', true)
)
UPDATE skiplock.content_jobs AS j
SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
    updated_at = now()
FROM written
-- = ANY: by primary key whatever the statistics say; each job's attempt is looked up in the
-- array beside its id (a join on unnest let stale statistics scan content_jobs, or rebuild
-- the whole batch once per job).
WHERE j.id = ANY (%(job_ids)s::uuid[])
  AND j.attempts = (%(attempts)s::integer[])[array_position(%(job_ids)s::uuid[], j.id)]
  AND j.locked_by = %(worker_id)s
  -- IS TRUE hides this test from the planner's index matching: as a plain
  -- status = 'running' it let stale statistics ("no job runs") walk every running
  -- job by index and join each to the whole batch, quadratic in the batch.
  AND (j.status = 'running') IS TRUE
RETURNING j.id
