CREATE OR REPLACE FUNCTION skiplock.enqueue_content_job(
    company_id uuid,
    job_type text,
    input jsonb DEFAULT '{}',
    source_task_id text DEFAULT NULL,
    priority integer DEFAULT 0,
    run_at timestamptz DEFAULT now()
) RETURNS uuid
LANGUAGE sql VOLATILE AS $$
    INSERT INTO skiplock.content_jobs (company_id, job_type, input, source_task_id, priority, run_at)
    VALUES ($1, $2, coalesce($3, '{}'), $4, coalesce($5, 0), coalesce($6, now()))
    RETURNING id
$$;
CREATE OR REPLACE FUNCTION skiplock.enqueue_content_jobs(
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
DROP FUNCTION skiplock.new_job_id();
COMMENT ON COLUMN skiplock.content_jobs.id IS NULL;
