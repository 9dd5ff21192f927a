-- Minimal tables for the raw-Postgres ceiling, beside skiplock's own schema.
DROP TABLE IF EXISTS bench_plain, bench_log, bench_queue, bench_events;
CREATE TABLE bench_plain (id bigserial PRIMARY KEY, company_id int NOT NULL, payload jsonb NOT NULL);
CREATE TABLE bench_log (id bigserial PRIMARY KEY, xid xid8 NOT NULL, row_id bigint NOT NULL, payload jsonb NOT NULL);

-- A minimal queue: only what a SKIP LOCKED claim needs, to compare skiplock's schema with.
CREATE TABLE bench_queue (id bigserial PRIMARY KEY, status text NOT NULL, payload jsonb NOT NULL);
CREATE INDEX bench_queue_queued ON bench_queue (id) WHERE status = 'queued';
CREATE TABLE bench_events (id bigserial PRIMARY KEY, job_id bigint NOT NULL, status text NOT NULL);

-- The minimal event log: one row per changed job, one notification per statement.
-- jit off for the same reason as skiplock's triggers (migration 0002): the planner sizes
-- the transition table like the whole table and would JIT-compile a 100-row insert.
CREATE OR REPLACE FUNCTION bench_queue_events() RETURNS trigger
LANGUAGE plpgsql SET jit = off AS $$
BEGIN
    INSERT INTO bench_events (job_id, status) SELECT id, status FROM changed;
    PERFORM pg_notify('bench_queue', '');
    RETURN NULL;
END $$;
CREATE TRIGGER bench_queue_events AFTER UPDATE ON bench_queue
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION bench_queue_events();
