-- The narrowest job table SPEC §2 would still allow as the claim's hot path (a sketch for
-- measuring, not skiplock's schema): the state columns only, SPEC's (company_id, status)
-- index, the claim and lease indexes, and an event log with content_job_events' indexes.
-- What a redesign that splits content_jobs into a narrow state table and a wide record
-- could save at most (bench/RESULTS.md, issue 15, "What a narrower job table could still give").
DROP TABLE IF EXISTS narrow_jobs, narrow_events;
CREATE TABLE narrow_jobs (
    id uuid PRIMARY KEY,
    company_id uuid NOT NULL,
    job_type text NOT NULL,
    status text NOT NULL DEFAULT 'queued',
    priority integer NOT NULL DEFAULT 0,
    run_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    locked_by text,
    lease_expires_at timestamptz,
    last_event_xid xid8 DEFAULT pg_current_xact_id(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz
);
CREATE INDEX narrow_jobs_company_status_idx ON narrow_jobs (company_id, status);
CREATE INDEX narrow_jobs_claim_idx ON narrow_jobs (company_id, job_type, priority DESC, run_at, id)
    WHERE status = 'queued';
CREATE INDEX narrow_jobs_lease_idx ON narrow_jobs (lease_expires_at) WHERE status = 'running';
CREATE TABLE narrow_events (
    id bigserial PRIMARY KEY,
    xid xid8 NOT NULL,
    company_id uuid NOT NULL,
    job_id uuid NOT NULL,
    type text NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON narrow_events (xid, id);
CREATE INDEX ON narrow_events (company_id, xid, id);
CREATE INDEX ON narrow_events (job_id, xid, id);
CREATE INDEX ON narrow_events USING brin (created_at);
