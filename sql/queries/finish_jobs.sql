-- finish_jobs: write the outcome of a batch of attempts in one statement (one notifying
-- commit): done (with its asset row, in the same transaction), failed, or back to queued
-- (a retry after an error or timeout, or handed back at shutdown with the attempt refunded).
-- Every row is fenced by locked_by and the attempt it was claimed at, and must still be
-- running: a job that was canceled, rescued or claimed again is left alone, and its asset
-- row is not written. Returns the ids that were written; the caller deletes the stored file
-- of any done job missing from the result. An asset row that commits takes its upload's
-- record (asset_uploads) with it: what stays recorded is an orphan to remove.
-- skiplock.finish_content_jobs() (sql/0006.fair-claiming.sql) writes the jobs' events and
-- doorbells itself, from the rows it updated: the statement-level event trigger would join
-- the whole old and new row images again (about a third of the statement's time).
-- The arrays are sent in binary (the b placeholders): 1.7 us of the worker's Python a job
-- less than as text (2.6 against 4.3 us, psycopg, batches of 100).
SELECT id
FROM skiplock.finish_content_jobs(
    %(worker_id)s, %(reason)s, %(job_ids)b::uuid[], %(attempts)b::integer[],
    %(statuses)b::text[], %(error_messages)b::text[], %(run_ats)b::timestamptz[],
    %(refunds)b::boolean[], %(progress)b::jsonb[], %(asset_ids)b::uuid[],
    %(providers)b::text[], %(object_keys)b::text[], %(content_types)b::text[],
    %(byte_sizes)b::bigint[], %(sha256s)b::text[], %(filenames)b::text[]) AS finished (id)
