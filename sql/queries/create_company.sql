-- create_company: a new tenant.
INSERT INTO skiplock.companies (name)
VALUES (%(name)s)
RETURNING id, name, created_at
