-- 0003.batch-enqueue: enqueue many jobs of one type in one statement.
-- depends: 0002.worker

-- enqueue_content_job() inserts one row per call, so a loop of 1,000 calls runs the event
-- trigger 1,000 times. This inserts them all in one statement: one trigger run, one event
-- row per job, one notification per channel.
CREATE FUNCTION skiplock.enqueue_content_jobs(
    company_id uuid,
    job_type text,
    inputs jsonb[],
    source_task_ids text[] DEFAULT NULL,
    priority integer DEFAULT 0,
    run_at timestamptz DEFAULT now()
) RETURNS SETOF uuid
LANGUAGE sql VOLATILE AS $$
    INSERT INTO skiplock.content_jobs (company_id, job_type, input, source_task_id, priority, run_at)
    SELECT $1, $2, coalesce(job.input, '{}'), job.source_task_id, coalesce($5, 0), coalesce($6, now())
    FROM unnest($3, $4) WITH ORDINALITY AS job (input, source_task_id, n)
    ORDER BY job.n
    RETURNING id
$$;
COMMENT ON FUNCTION skiplock.enqueue_content_jobs(uuid, text, jsonb[], text[], integer, timestamptz) IS
  'Enqueue one job per element of inputs (source_task_ids, when given, pairs with inputs) in one statement, inside the caller''s transaction. Returns the job ids in input order.';
