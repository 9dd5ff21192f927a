BEGIN;
INSERT INTO bench_plain (company_id, payload) VALUES (1, '{}');
SELECT pg_notify('bench', '1');
END;
