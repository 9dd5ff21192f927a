-- One worker round on skiplock's schema, with the worker's own statements: claim :batch due
-- jobs (companies taking turns, SKIP LOCKED) with claim_content_jobs(), then finish them all
-- with finish_content_jobs(). Each is its own notifying commit (one doorbell per company),
-- and each writes its jobs' events itself.
SELECT coalesce(array_agg(id), '{}')::text AS ids,
       coalesce(array_agg(attempts), '{}')::text AS attempts,
       count(*) AS n
FROM skiplock.claim_content_jobs('bench-' || :client_id, '{noop}', :batch, 30)
\gset
SELECT count(*)
FROM skiplock.finish_content_jobs(
    'bench-' || :client_id, '', :ids::uuid[], :attempts::integer[],
    array_fill('done'::text, ARRAY[:n::integer]), array_fill(NULL::text, ARRAY[:n::integer]),
    array_fill(NULL::timestamptz, ARRAY[:n::integer]), array_fill(false, ARRAY[:n::integer]),
    array_fill(NULL::jsonb, ARRAY[:n::integer]), array_fill(NULL::uuid, ARRAY[:n::integer]),
    array_fill(NULL::text, ARRAY[:n::integer]), array_fill(NULL::text, ARRAY[:n::integer]),
    array_fill(NULL::text, ARRAY[:n::integer]), array_fill(NULL::bigint, ARRAY[:n::integer]),
    array_fill(NULL::text, ARRAY[:n::integer]), array_fill(NULL::text, ARRAY[:n::integer]));
