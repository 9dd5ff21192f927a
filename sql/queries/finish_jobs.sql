-- finish_jobs: write the outcome of a batch of attempts in one statement (one notifying
-- commit): done (with its asset row, in the same transaction), failed, or back to queued
-- (a retry after an error or timeout, or handed back at shutdown with the attempt refunded).
-- Every row is fenced by locked_by and the attempt it was claimed at, and must still be
-- running: a job that was canceled, rescued or claimed again is left alone, and its asset
-- row is not written. Returns the ids that were written; the caller deletes the stored file
-- of any done job missing from the result.
--
-- It writes the jobs' events and rings their doorbells itself, from the rows it updated:
-- the statement-level event trigger, told so by skiplock.events_written, does nothing (it
-- would join the whole old and new row images again: about a third of the statement's
-- time). The order key of each event is the row's last_event_xid, raised to this
-- transaction's id on the newest row version (SPEC §2).
WITH written AS (
    SELECT set_config('skiplock.events_written', 'on', true)
),
outcome AS (
    SELECT *
    FROM unnest(%(job_ids)s::uuid[], %(attempts)s::integer[], %(statuses)s::text[],
                %(error_messages)s::text[], %(run_ats)s::timestamptz[], %(refunds)s::boolean[],
                %(asset_ids)s::uuid[], %(progress)s::jsonb[])
        AS o (id, attempt, status, error_message, run_at, refund, asset_id, progress)
),
finished AS (
    UPDATE skiplock.content_jobs AS j
    SET status = o.status,
        attempts = CASE WHEN o.refund THEN j.attempts - 1 ELSE j.attempts END,
        error_message = CASE WHEN o.status = 'done' THEN NULL
                             ELSE coalesce(o.error_message, j.error_message) END,
        result_asset_id = CASE WHEN o.status = 'done' THEN o.asset_id ELSE j.result_asset_id END,
        run_at = CASE WHEN o.status = 'queued' THEN coalesce(o.run_at, now()) ELSE j.run_at END,
        finished_at = CASE WHEN o.status IN ('done', 'failed') THEN now() END,
        progress = coalesce(o.progress, j.progress),
        locked_by = NULL,
        lease_expires_at = NULL,
        updated_at = now(),
        last_event_xid = greatest(pg_current_xact_id(), j.last_event_xid)
    FROM outcome AS o, written
    -- = ANY: the jobs are found by primary key whatever the statistics say (a join on
    -- unnest alone let stale statistics pick a sequential scan of content_jobs).
    WHERE j.id = ANY (%(job_ids)s::uuid[])
      AND j.id = o.id
      AND j.attempts = o.attempt
      AND j.locked_by = %(worker_id)s
      -- IS TRUE hides this test from the planner's index matching: as a plain
      -- status = 'running' it let stale statistics ("no job runs") walk every running
      -- job by index and join each to the whole batch, quadratic in the batch.
      AND (j.status = 'running') IS TRUE
    RETURNING j.id, j.company_id, j.job_type, j.status, j.run_at, j.error_message,
              j.result_asset_id, j.source_task_id, j.progress, j.last_event_xid,
              o.attempt, o.progress IS NOT NULL AS progressed
),
logged AS (
    -- Up to two events per job, progress first: a progress value the handler reported
    -- last (the worker passes only one not yet written) is its own event, before the
    -- terminal one. A job queued again says why (%(reason)s) and which attempt ended.
    INSERT INTO skiplock.content_job_events (xid, company_id, job_id, type, payload)
    SELECT f.last_event_xid, f.company_id, f.id, e.type, e.payload
    FROM finished AS f
    CROSS JOIN LATERAL (VALUES
        (1, 'content_job.progress',
         CASE WHEN f.progressed THEN jsonb_build_object('status', f.status, 'progress', f.progress) END),
        (2, 'content_job.' || f.status,
         jsonb_build_object('status', f.status) || CASE f.status
             WHEN 'queued' THEN jsonb_build_object(
                 'reason', %(reason)s::text, 'attempt', f.attempt,
                 'retryAt', to_char(f.run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
             WHEN 'done' THEN jsonb_build_object('assetId', f.result_asset_id)
             WHEN 'failed' THEN jsonb_build_object('errorMessage', f.error_message)
             ELSE '{}'::jsonb END)
    ) AS e (ord, type, payload)
    WHERE e.payload IS NOT NULL
    ORDER BY f.id, e.ord
),
stored AS (
    INSERT INTO skiplock.assets (id, company_id, provider, object_key, content_type, byte_size,
                                 sha256, original_filename, source_task_id)
    SELECT a.id, f.company_id, a.provider, a.object_key, a.content_type, a.byte_size,
           a.sha256, a.original_filename, f.source_task_id
    FROM unnest(%(asset_ids)s::uuid[], %(providers)s::text[], %(object_keys)s::text[],
                %(content_types)s::text[], %(byte_sizes)s::bigint[], %(sha256s)s::text[],
                %(filenames)s::text[])
        AS a (id, provider, object_key, content_type, byte_size, sha256, original_filename)
    JOIN finished AS f ON f.result_asset_id = a.id
    WHERE a.id IS NOT NULL
),
rung AS (
    -- The companies' doorbells; and the types' where a job became claimable: queued again
    -- and due (a hand-back at shutdown), or a place freed under its company's max_running.
    SELECT pg_notify('content_job_events', jsonb_build_object('companyId', d.company_id)::text)
    FROM (SELECT DISTINCT company_id FROM finished) AS d
    UNION ALL
    SELECT pg_notify('content_jobs_queued', t.job_type)
    FROM (
        SELECT DISTINCT f.job_type
        FROM (SELECT DISTINCT company_id, job_type, status = 'queued' AND run_at <= now() AS due
              FROM finished) AS f
        WHERE f.due OR EXISTS (SELECT 1 FROM skiplock.companies AS c
                               WHERE c.id = f.company_id AND c.max_running IS NOT NULL)
    ) AS t
)
SELECT id FROM finished
WHERE (SELECT count(*) FROM rung) >= 0  -- rings the doorbells before the ids go out
