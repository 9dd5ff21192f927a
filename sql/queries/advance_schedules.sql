-- advance_schedules: move schedules on to their next run, with the tick just handled and
-- the job it made (null when skipped), in the transaction that locked them.
UPDATE skiplock.schedules AS s
SET next_run_at = a.next_run_at,
    last_run_at = a.tick,
    last_job_id = a.job_id,
    updated_at = now()
FROM unnest(%(schedule_ids)s::uuid[], %(next_run_ats)s::timestamptz[],
            %(ticks)s::timestamptz[], %(job_ids)s::uuid[])
    AS a (id, next_run_at, tick, job_id)
WHERE s.id = a.id
