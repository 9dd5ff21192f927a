-- 0004.pause-and-running-hint: pausing a job type (SPEC §8), and a hand-made 'running'
-- refused with a reason a person can act on.
-- depends: 0003.batch-enqueue

-- ---------------------------------------------------------------------------------------
-- Paused job types
-- ---------------------------------------------------------------------------------------
CREATE TABLE skiplock.paused_job_types (
    job_type   text NOT NULL CONSTRAINT job_type_not_blank CHECK (btrim(job_type) <> ''),
    company_id uuid REFERENCES skiplock.companies (id) ON DELETE CASCADE,
    paused_at  timestamptz NOT NULL DEFAULT now()
);
-- One row per (type, company), the all-companies row (company_id null) included; an
-- expression index rather than NULLS NOT DISTINCT so it works before PostgreSQL 15 too.
CREATE UNIQUE INDEX paused_job_types_once_idx ON skiplock.paused_job_types
    (job_type, coalesce(company_id, '00000000-0000-0000-0000-000000000000'::uuid));
COMMENT ON TABLE skiplock.paused_job_types IS
  'Job types whose claiming is stopped: a row with company_id null pauses the type for every company, one with a company_id for that company only. Queued jobs stay queued and running ones finish. Insert to pause, delete to resume (deleting wakes the workers); `skiplock jobs pause|resume` do the same.';
COMMENT ON COLUMN skiplock.paused_job_types.company_id IS
  'The one company whose jobs of this type are paused; null = every company.';
COMMENT ON COLUMN skiplock.paused_job_types.paused_at IS 'When the pause began.';

-- Resuming makes queued jobs claimable again: ring the same doorbell a new job rings, so idle
-- workers claim them at once instead of at their next poll.
CREATE FUNCTION skiplock.paused_job_types_ring() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('content_jobs_queued', t.job_type)
    FROM (SELECT DISTINCT job_type FROM resumed) AS t;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION skiplock.paused_job_types_ring() IS
  'Rings content_jobs_queued for every job type whose pause was lifted, so workers claim its jobs within a second.';
CREATE TRIGGER paused_job_types_ring
    AFTER DELETE ON skiplock.paused_job_types
    REFERENCING OLD TABLE AS resumed
    FOR EACH STATEMENT
    EXECUTE FUNCTION skiplock.paused_job_types_ring();
COMMENT ON TRIGGER paused_job_types_ring ON skiplock.paused_job_types IS
  'Wakes workers when a pause is lifted.';

-- ---------------------------------------------------------------------------------------
-- A hand-made 'running' must carry a lease
-- ---------------------------------------------------------------------------------------
COMMENT ON CONSTRAINT running_has_lease ON skiplock.content_jobs IS
  'A running job must name its worker (locked_by) and lease (lease_expires_at): without a lease no worker would ever rescue it. Let a worker claim the job, or set locked_by and lease_expires_at in the same UPDATE.';

-- content_jobs_touch runs only for hand-made updates (skiplock's own statements set
-- updated_at and skip it). Same as 0001's, plus: a change to 'running' without a lease is
-- refused here, with the reason and the fix, before the bare constraint name would be all a
-- person sees.
CREATE OR REPLACE FUNCTION skiplock.content_jobs_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        IF NEW.status = 'running' AND (NEW.locked_by IS NULL OR NEW.lease_expires_at IS NULL) THEN
            RAISE EXCEPTION 'job % cannot be running without a lease', NEW.id
                USING ERRCODE = 'check_violation',
                      CONSTRAINT = 'running_has_lease',
                      DETAIL = 'A running job needs locked_by and lease_expires_at, or no worker would ever rescue it when its worker dies.',
                      HINT = 'Let a worker claim it (set it to queued with run_at = now()), or set locked_by and lease_expires_at in the same UPDATE.';
        END IF;
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
