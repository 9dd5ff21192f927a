-- check_held_jobs: which of the jobs this worker runs are still its own (read-only, so it
-- rings nothing). Runs every 500 ms while handlers run: a job canceled in the API or by hand
-- in psql, or taken back by a rescuer, comes back here with its current status and owner,
-- and the worker stops its handler. = ANY finds them by primary key whatever the statistics;
-- each job's attempt is looked up in the array beside its id.
SELECT j.id, j.status, j.locked_by, j.attempts
FROM skiplock.content_jobs AS j
WHERE j.id = ANY (%(job_ids)s::uuid[])
  AND (j.status <> 'running'
       OR j.locked_by IS DISTINCT FROM %(worker_id)s
       OR j.attempts <> (%(attempts)s::integer[])[array_position(%(job_ids)s::uuid[], j.id)])
