DROP TABLE skiplock.schedules;
DROP TRIGGER content_job_events_outbox ON skiplock.content_job_events;
DROP FUNCTION skiplock.content_job_events_outbox();
DROP TABLE skiplock.webhook_deliveries;
DROP TABLE skiplock.webhooks;
