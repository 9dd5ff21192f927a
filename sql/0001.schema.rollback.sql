-- Undo 0001.schema: drop every object it created. The schema itself stays, since yoyo keeps
-- its bookkeeping tables in it.
DROP FUNCTION IF EXISTS skiplock.enqueue_content_job(uuid, text, jsonb, text, integer, timestamptz);
DROP VIEW IF EXISTS skiplock.content_job_stats;
DROP TABLE IF EXISTS skiplock.workers;
DROP TABLE IF EXISTS skiplock.content_job_events;
DROP TABLE IF EXISTS skiplock.assets;
DROP TABLE IF EXISTS skiplock.content_jobs;
DROP FUNCTION IF EXISTS skiplock.content_jobs_log_update();
DROP FUNCTION IF EXISTS skiplock.content_jobs_log_insert();
DROP FUNCTION IF EXISTS skiplock.content_jobs_touch();
DROP TABLE IF EXISTS skiplock.stream_tokens;
DROP TABLE IF EXISTS skiplock.api_keys;
DROP TABLE IF EXISTS skiplock.companies;
