-- Minimal tables for the raw-Postgres ceiling, beside skiplock's own schema.
DROP TABLE IF EXISTS bench_plain, bench_log;
CREATE TABLE bench_plain (id bigserial PRIMARY KEY, company_id int NOT NULL, payload jsonb NOT NULL);
CREATE TABLE bench_log (id bigserial PRIMARY KEY, xid xid8 NOT NULL, row_id bigint NOT NULL, payload jsonb NOT NULL);
