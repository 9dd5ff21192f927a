DROP FUNCTION skiplock.enqueue_content_jobs(uuid, text, jsonb[], text[], integer, timestamptz);
