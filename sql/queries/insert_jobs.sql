-- insert_jobs: jobs submitted over HTTP, many requests in one statement. The API gathers the
-- submits that arrive while its previous insert runs (api/submits.py), so concurrent clients
-- share one notifying commit instead of queueing for one each. The ids are made by the
-- caller, so each request finds its own row in the result.
-- With an idempotency key, the unique index decides between concurrent requests (no
-- read-then-write race), also between two requests of the same statement: a conflict
-- inserts nothing and returns no row, and its caller reads the job that holds the key.
INSERT INTO skiplock.content_jobs (id, company_id, job_type, input, source_task_id, priority,
                                   run_at, max_attempts, timeout_seconds, idempotency_key,
                                   idempotency_request_sha256)
SELECT j.id, j.company_id, j.job_type, j.input, j.source_task_id, j.priority,
       coalesce(j.run_at, now()), j.max_attempts, j.timeout_seconds, j.idempotency_key,
       j.request_sha256
FROM unnest(%(ids)s::uuid[], %(company_ids)s::uuid[], %(job_types)s::text[],
            %(inputs)s::jsonb[], %(source_task_ids)s::text[], %(priorities)s::integer[],
            %(run_ats)s::timestamptz[], %(max_attempts)s::integer[],
            %(timeouts)s::integer[], %(idempotency_keys)s::text[],
            %(request_sha256s)s::text[])
    WITH ORDINALITY AS j (id, company_id, job_type, input, source_task_id, priority, run_at,
                          max_attempts, timeout_seconds, idempotency_key, request_sha256, n)
ORDER BY j.n
ON CONFLICT (company_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id, status, created_at
