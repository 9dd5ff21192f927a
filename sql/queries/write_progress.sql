-- write_progress: the latest progress of several running jobs in one statement (the worker
-- throttles each job to one write a second and batches across jobs). Fenced like every write
-- to a held job. Every row it changes gets a content_job.progress event, written here (the
-- event trigger is told so by skiplock.events_written), ordered after the job's previous
-- event by last_event_xid.
WITH written AS (
    SELECT set_config('skiplock.events_written', 'on', true)
),
reported AS (
    UPDATE skiplock.content_jobs AS j
    -- Each job's values are looked up in the arrays beside its id.
    SET progress = (%(progress)s::jsonb[])[array_position(%(job_ids)s::uuid[], j.id)],
        updated_at = now(),
        last_event_xid = greatest(pg_current_xact_id(), j.last_event_xid)
    FROM written
    -- = ANY: by primary key whatever the statistics say (a join on unnest let stale
    -- statistics scan content_jobs, or rebuild the whole batch once per job).
    WHERE j.id = ANY (%(job_ids)s::uuid[])
      AND j.attempts = (%(attempts)s::integer[])[array_position(%(job_ids)s::uuid[], j.id)]
      AND j.locked_by = %(worker_id)s
      -- IS TRUE hides this test from the planner's index matching: as a plain
      -- status = 'running' it let stale statistics ("no job runs") walk every running
      -- job by index and join each to the whole batch, quadratic in the batch.
      AND (j.status = 'running') IS TRUE
      -- Checked on the newest row version: a value already there makes no event.
      AND j.progress IS DISTINCT FROM (%(progress)s::jsonb[])[array_position(%(job_ids)s::uuid[], j.id)]
    RETURNING j.id, j.company_id, j.status, j.progress, j.last_event_xid
),
logged AS (
    INSERT INTO skiplock.content_job_events (xid, company_id, job_id, type, payload)
    SELECT r.last_event_xid, r.company_id, r.id, 'content_job.progress',
           jsonb_build_object('status', r.status, 'progress', r.progress)
    FROM reported AS r
    ORDER BY r.id
),
rung AS (
    SELECT pg_notify('content_job_events', jsonb_build_object('companyId', d.company_id)::text)
    FROM (SELECT DISTINCT company_id FROM reported) AS d
)
SELECT id FROM reported
WHERE (SELECT count(*) FROM rung) >= 0  -- rings the doorbells before the ids go out
