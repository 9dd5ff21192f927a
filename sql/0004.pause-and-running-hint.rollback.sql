CREATE OR REPLACE FUNCTION skiplock.content_jobs_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        IF NEW.status IN ('done', 'failed', 'canceled') AND NEW.finished_at IS NOT DISTINCT FROM OLD.finished_at THEN
            NEW.finished_at := now();
        END IF;
        IF NEW.status <> 'running' THEN
            NEW.locked_by := NULL;
            NEW.lease_expires_at := NULL;
        END IF;
        IF NEW.status = 'queued' THEN
            NEW.finished_at := NULL;
        END IF;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON CONSTRAINT running_has_lease ON skiplock.content_jobs IS NULL;
DROP TABLE skiplock.paused_job_types;
DROP FUNCTION skiplock.paused_job_types_ring();
