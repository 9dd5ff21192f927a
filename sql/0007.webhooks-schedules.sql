-- 0007.webhooks-schedules: completion webhooks (an outbox filled by trigger) and schedules.
-- depends: 0006.fair-claiming

-- ---------------------------------------------------------------------------------------
-- Webhooks: where a company wants its events POSTed
-- ---------------------------------------------------------------------------------------
CREATE TABLE skiplock.webhooks (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    company_id uuid NOT NULL REFERENCES skiplock.companies (id) ON DELETE CASCADE,
    url        text NOT NULL
        CONSTRAINT url_is_http CHECK (url ~* '^https?://[^[:space:][:cntrl:]]+$' AND length(url) <= 2048),
    events     text[] NOT NULL
        CONSTRAINT events_are_known CHECK (
            cardinality(events) BETWEEN 1 AND 6
            AND events <@ ARRAY['content_job.queued', 'content_job.running', 'content_job.progress',
                                'content_job.done', 'content_job.failed', 'content_job.canceled']::text[]),
    secret     text NOT NULL
        CONSTRAINT secret_is_whsec CHECK (secret ~ '^whsec_[A-Za-z0-9+/]{32,}={0,2}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_company_idx ON skiplock.webhooks (company_id, created_at);
COMMENT ON TABLE skiplock.webhooks IS
  'Completion webhooks (Standard Webhooks): every content_job_events row of the company whose type is in events gets a webhook_deliveries row, by trigger, in the same transaction.';
COMMENT ON COLUMN skiplock.webhooks.url IS
  'http or https URL the deliveries are POSTed to. Hosts that are or resolve to loopback, private, link-local or multicast addresses are refused unless SKIPLOCK_WEBHOOK_ALLOW_PRIVATE=true.';
COMMENT ON COLUMN skiplock.webhooks.events IS 'The event types delivered (content_job.done, ...).';
COMMENT ON COLUMN skiplock.webhooks.secret IS
  'whsec_ + base64 of 32 random bytes: the HMAC-SHA256 key of webhook-signature. Kept in clear because signing needs it; the API shows it only when the webhook is created.';

-- ---------------------------------------------------------------------------------------
-- Deliveries: the outbox
-- ---------------------------------------------------------------------------------------
CREATE TABLE skiplock.webhook_deliveries (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- No foreign key to webhooks: every transaction that writes a delivery would take a KEY
    -- SHARE lock on its webhook's row, and concurrent ones on one hot row pile up MultiXacts.
    -- delete_webhook.sql deletes a webhook's deliveries with it; rows left by one deleted
    -- by hand (or racing a delete) are never claimed and are pruned within a minute.
    webhook_id       uuid NOT NULL,
    company_id       uuid NOT NULL,
    event_id         bigint NOT NULL,
    job_id           uuid NOT NULL REFERENCES skiplock.content_jobs (id) ON DELETE CASCADE,
    type             text NOT NULL,
    payload          jsonb NOT NULL,
    event_created_at timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
        CONSTRAINT status_is_known CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0 CONSTRAINT attempts_not_negative CHECK (attempts >= 0),
    next_attempt_at  timestamptz DEFAULT now(),
    locked_by        text,
    lease_expires_at timestamptz,
    last_status_code integer,
    last_error       text,
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pending_has_next_attempt CHECK ((status = 'pending') = (next_attempt_at IS NOT NULL)),
    CONSTRAINT delivered_has_time CHECK (status <> 'delivered' OR delivered_at IS NOT NULL)
) WITH (fillfactor = 70);
-- fillfactor 70: room on each page for the claim's update, which changes no indexed column
-- (attempts, locked_by, lease_expires_at), to be a HOT update that writes no index entry.
-- The claim: pending deliveries in next_attempt_at order.
CREATE INDEX webhook_deliveries_due_idx ON skiplock.webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
-- The deliveries route (newest first per webhook), and deleting a webhook.
CREATE INDEX webhook_deliveries_webhook_idx ON skiplock.webhook_deliveries (webhook_id, created_at, id);
-- Deleting a job (retention) deletes its deliveries.
CREATE INDEX webhook_deliveries_job_idx ON skiplock.webhook_deliveries (job_id);
-- Pruning finds old deliveries by age, as content_job_events_created_brin does for events.
CREATE INDEX webhook_deliveries_created_brin ON skiplock.webhook_deliveries USING brin (created_at);
COMMENT ON TABLE skiplock.webhook_deliveries IS
  'The webhook outbox: a row per (event, webhook), written by the trigger on content_job_events in the event''s own transaction, sent by any worker (SKIP LOCKED), retried about 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h after failed attempts, then failed. Finished rows are pruned after SKIPLOCK_EVENT_RETENTION_DAYS.';
COMMENT ON COLUMN skiplock.webhook_deliveries.id IS 'Sent as the webhook-id header, the same on every attempt: receivers de-duplicate by it.';
COMMENT ON COLUMN skiplock.webhook_deliveries.event_id IS 'The content_job_events.id reported (no FK: events are pruned on their own schedule).';
COMMENT ON COLUMN skiplock.webhook_deliveries.payload IS
  'A copy of the event''s payload (with type, event_id and event_created_at), so the body, the event''s SSE data JSON, can be built after the event is pruned.';
COMMENT ON COLUMN skiplock.webhook_deliveries.status IS 'pending (due or in flight), delivered (a 2xx answer) or failed (attempts used up).';
COMMENT ON COLUMN skiplock.webhook_deliveries.attempts IS 'Attempts started so far, counted when a worker claims one.';
COMMENT ON COLUMN skiplock.webhook_deliveries.next_attempt_at IS
  'While pending: when the next attempt is due (about 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h after failed attempts). Null once delivered or failed.';
COMMENT ON COLUMN skiplock.webhook_deliveries.locked_by IS 'The worker whose attempt is in flight (null between attempts); its outcome is written only if it still holds the delivery.';
COMMENT ON COLUMN skiplock.webhook_deliveries.lease_expires_at IS
  'While an attempt is in flight: until when its worker holds it. A worker killed mid-attempt leaves it to any worker once this passes (at least once).';
COMMENT ON COLUMN skiplock.webhook_deliveries.last_status_code IS 'The HTTP status of the last answer (null when there was none: a timeout, a refused connection).';
COMMENT ON COLUMN skiplock.webhook_deliveries.last_error IS 'Why the last attempt failed, e.g. "HTTP 500: ...", "timed out after 10 s", "refused: ... is a loopback address".';

-- The outbox trigger: statement-level with a transition table, so every writer of events
-- (the content_jobs triggers, whoever changes a job: the API, a worker, psql) gets its
-- delivery rows in the same transaction, with one INSERT ... SELECT per statement.
CREATE FUNCTION skiplock.content_job_events_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- No webhook anywhere (most deployments): one index probe, nothing else.
    IF NOT EXISTS (SELECT 1 FROM skiplock.webhooks) THEN
        RETURN NULL;
    END IF;
    INSERT INTO skiplock.webhook_deliveries
        (webhook_id, company_id, event_id, job_id, type, payload, event_created_at)
    SELECT w.id, e.company_id, e.id, e.job_id, e.type, e.payload, e.created_at
    FROM new_events AS e
    JOIN skiplock.webhooks AS w ON w.company_id = e.company_id AND e.type = ANY (w.events)
    ORDER BY e.xid, e.id, w.id;
    IF FOUND THEN
        -- A doorbell for the workers' senders; folded to one per transaction by Postgres.
        PERFORM pg_notify('webhook_deliveries', '');
    END IF;
    RETURN NULL;
END
$$;
ALTER FUNCTION skiplock.content_job_events_outbox() SET jit = off;  -- see 0002.worker
COMMENT ON FUNCTION skiplock.content_job_events_outbox() IS
  'Writes a webhook_deliveries row per new event and matching webhook of its company, and rings webhook_deliveries.';
CREATE TRIGGER content_job_events_outbox
    AFTER INSERT ON skiplock.content_job_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT
    EXECUTE FUNCTION skiplock.content_job_events_outbox();
COMMENT ON TRIGGER content_job_events_outbox ON skiplock.content_job_events IS
  'The webhook outbox: delivery rows commit with the events they report, whoever wrote them.';

-- ---------------------------------------------------------------------------------------
-- Schedules: periodic jobs
-- ---------------------------------------------------------------------------------------
CREATE TABLE skiplock.schedules (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    company_id       uuid NOT NULL REFERENCES skiplock.companies (id) ON DELETE CASCADE,
    job_type         text NOT NULL CONSTRAINT job_type_not_blank CHECK (btrim(job_type) <> ''),
    input            jsonb NOT NULL DEFAULT '{}'
        CONSTRAINT input_is_object CHECK (jsonb_typeof(input) = 'object'),
    cron             text CONSTRAINT cron_length CHECK (length(cron) <= 200),
    interval_seconds integer
        CONSTRAINT interval_seconds_in_range CHECK (interval_seconds BETWEEN 1 AND 31536000),
    timezone         text NOT NULL DEFAULT 'UTC' CONSTRAINT timezone_length CHECK (length(timezone) <= 64),
    source_task_id   text,
    priority         integer NOT NULL DEFAULT 0
        CONSTRAINT priority_in_range CHECK (priority BETWEEN -1000 AND 1000),
    next_run_at      timestamptz NOT NULL,
    last_run_at      timestamptz,
    last_job_id      uuid,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT cron_or_interval CHECK ((cron IS NULL) <> (interval_seconds IS NULL))
);
CREATE INDEX schedules_company_idx ON skiplock.schedules (company_id, created_at);
CREATE INDEX schedules_due_idx ON skiplock.schedules (next_run_at);
COMMENT ON TABLE skiplock.schedules IS
  'Periodic jobs. Any worker enqueues the job of a due tick (the row locked with SKIP LOCKED, the job''s idempotency key schedule:<id>:<tick> unique), so each tick makes one job however many workers run; ticks missed while no worker ran collapse into one, for the latest.';
COMMENT ON COLUMN skiplock.schedules.cron IS '5 cron fields (minute hour day-of-month month day-of-week), evaluated in timezone; null for an interval schedule.';
COMMENT ON COLUMN skiplock.schedules.interval_seconds IS 'Every N seconds from creation (1..31536000); null for a cron schedule.';
COMMENT ON COLUMN skiplock.schedules.timezone IS 'IANA time zone the cron fields are read in (daylight saving time as Debian cron handles it).';
COMMENT ON COLUMN skiplock.schedules.next_run_at IS 'The next tick; a worker enqueues its job once it passes and moves this to the tick after now.';
COMMENT ON COLUMN skiplock.schedules.last_run_at IS 'The last tick a job was enqueued for (or skipped, at the company''s max_queued).';
COMMENT ON COLUMN skiplock.schedules.last_job_id IS 'The job the last tick enqueued (null when it was skipped).';
