-- Deliveries of jobs deleted by hand since 0009 would fail the foreign key: they go first.
DELETE FROM skiplock.webhook_deliveries AS d
WHERE NOT EXISTS (SELECT 1 FROM skiplock.content_jobs AS j WHERE j.id = d.job_id);
ALTER TABLE skiplock.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_job_id_fkey
    FOREIGN KEY (job_id) REFERENCES skiplock.content_jobs (id) ON DELETE CASCADE;
COMMENT ON COLUMN skiplock.webhook_deliveries.job_id IS NULL;
