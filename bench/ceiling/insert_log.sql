BEGIN;
WITH r AS (INSERT INTO bench_plain (company_id, payload) VALUES (1, '{}') RETURNING id)
INSERT INTO bench_log (xid, row_id, payload) SELECT pg_current_xact_id(), id, '{}' FROM r;
END;
