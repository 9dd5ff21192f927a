-- create_schema: the schema every skiplock object lives in; yoyo's bookkeeping tables go
-- there too, so it must exist before yoyo runs.
CREATE SCHEMA IF NOT EXISTS skiplock
