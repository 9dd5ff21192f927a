INSERT INTO bench_plain (company_id, payload) VALUES (1, '{}');
