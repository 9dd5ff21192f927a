-- finish_jobs: write the outcome of a batch of attempts in one statement (one notifying
-- commit): done (with its asset row, in the same transaction), failed, or back to queued
-- (a retry after an error or timeout, or handed back at shutdown with the attempt refunded).
-- Every row is fenced by locked_by and the attempt it was claimed at, and must still be
-- running: a job that was canceled, rescued or claimed again is left alone, and its asset
-- row is not written. Returns the ids that were written; the caller deletes the stored file
-- of any done job missing from the result. An asset row that commits takes its upload's
-- record (asset_uploads) with it: what stays recorded is an orphan to remove.
WITH reason AS (
    -- Tells the event trigger why queued rows went back (error, timeout or shutdown);
    -- done and failed rows ignore it. One reason per statement.
    SELECT set_config('skiplock.change_reason', %(reason)s, true)
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
        updated_at = now()
    FROM outcome AS o, reason
    WHERE j.id = o.id
      AND j.attempts = o.attempt
      AND j.locked_by = %(worker_id)s
      -- IS TRUE hides this test from the planner's index matching: as a plain
      -- status = 'running' it let stale statistics ("no job runs") walk every running
      -- job by index and join each to the whole batch, quadratic in the batch.
      AND (j.status = 'running') IS TRUE
    RETURNING j.id, j.company_id, j.source_task_id, j.result_asset_id
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
    RETURNING provider, object_key
),
uploaded AS (
    DELETE FROM skiplock.asset_uploads AS u
    USING stored AS s
    WHERE u.provider = s.provider AND u.object_key = s.object_key
)
SELECT id FROM finished
