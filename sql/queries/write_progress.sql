-- write_progress: the latest progress of several running jobs in one statement (the worker
-- throttles each job to one write a second and batches across jobs). Fenced like every write
-- to a held job; the trigger turns each change into a content_job.progress event.
UPDATE skiplock.content_jobs AS j
SET progress = p.progress,
    updated_at = now()
FROM unnest(%(job_ids)s::uuid[], %(attempts)s::integer[], %(progress)s::jsonb[])
    AS p (id, attempt, progress)
WHERE j.id = p.id
  AND j.attempts = p.attempt
  AND j.locked_by = %(worker_id)s
  -- IS TRUE hides this test from the planner's index matching: as a plain
  -- status = 'running' it let stale statistics ("no job runs") walk every running
  -- job by index and join each to the whole batch, quadratic in the batch.
  AND (j.status = 'running') IS TRUE
  AND j.progress IS DISTINCT FROM p.progress
RETURNING j.id
