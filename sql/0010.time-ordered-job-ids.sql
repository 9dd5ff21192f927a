-- 0010.time-ordered-job-ids: skiplock's own inserts give jobs time-ordered ids (UUIDv7).
-- depends: 0009.deliveries-without-job-fk
--
-- Why: every state change of a job is a non-HOT update (SPEC indexes status), so each one
-- adds an entry for the job's id to the primary key, and each event row one to
-- content_job_events_job_idx (job_id, xid, id). With random (version 4) ids a claim of 100
-- jobs touched 100 leaf pages of each, scattered over the whole index; with ids that grow
-- with time the jobs a claim takes (queued in that order) sit side by side, on a few pages.
-- pgbench of the worker's claim of 100 + finish, with the event log: 68.4 -> 56.3 µs a job
-- (bench/RESULTS.md, issue 15, "Time-ordered job ids").
-- The column default stays gen_random_uuid() (SPEC §2): a row inserted by hand without an
-- id gets a random one, and works the same, only without the locality.

-- RFC 9562 version 7: 48 bits of Unix time in ms, then the version (7) and 12 bits of the
-- sub-millisecond fraction (method 3 of the RFC: ids of one session keep their order to
-- about 0.25 µs), then the variant and 62 random bits (those of a version 4 uuid, whose
-- variant bits are already 10). The order only places index entries: nothing relies on it
-- (a clock that steps back makes ids out of order, and that is all).
-- plpgsql, not sql: the clock is read once for both parts, and the call costs about 2 µs
-- (a sql function with a sub-select, not inlined, cost 4.6).
CREATE FUNCTION skiplock.new_job_id() RETURNS uuid
LANGUAGE plpgsql VOLATILE PARALLEL SAFE AS $$
DECLARE
    us bigint := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
BEGIN
    RETURN encode(substring(int8send(us / 1000) FROM 3)                          -- Unix ms
                  || int2send((28672 + (us % 1000) * 4096 / 1000)::smallint)      -- 0x7000 | fraction
                  || substring(uuid_send(gen_random_uuid()) FROM 9),              -- variant, random
                  'hex')::uuid;
END
$$;
COMMENT ON FUNCTION skiplock.new_job_id() IS
  'A new job id: a version 7 uuid (RFC 9562), time-ordered, so the index entries of jobs queued together sit together. Used by enqueue_content_job(s), the API and schedules; the column default stays gen_random_uuid().';

CREATE OR REPLACE FUNCTION skiplock.enqueue_content_job(
    company_id uuid,
    job_type text,
    input jsonb DEFAULT '{}',
    source_task_id text DEFAULT NULL,
    priority integer DEFAULT 0,
    run_at timestamptz DEFAULT now()
) RETURNS uuid
LANGUAGE sql VOLATILE AS $$
    INSERT INTO skiplock.content_jobs (id, company_id, job_type, input, source_task_id, priority, run_at)
    VALUES (skiplock.new_job_id(), $1, $2, coalesce($3, '{}'), $4, coalesce($5, 0), coalesce($6, now()))
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
    -- new_job_id() in the outer query, after the ORDER BY: ids grow in input order.
    INSERT INTO skiplock.content_jobs (id, company_id, job_type, input, source_task_id, priority, run_at)
    SELECT skiplock.new_job_id(), j.*
    FROM (SELECT $1, $2, coalesce(job.input, '{}'), job.source_task_id, coalesce($5, 0), coalesce($6, now())
          FROM unnest($3, $4) WITH ORDINALITY AS job (input, source_task_id, n)
          ORDER BY job.n) AS j
    RETURNING id
$$;

COMMENT ON COLUMN skiplock.content_jobs.id IS
  'The job id. skiplock''s inserts (the API, enqueue_content_job(s), schedules) use skiplock.new_job_id(), a time-ordered version 7 uuid; the default, for a row inserted by hand, is a random one.';
