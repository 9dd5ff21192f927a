-- pause_job_type: stop claiming a job type, for every company (company_id null) or one
-- (SPEC §8). Queued jobs stay queued and running ones finish. Pausing what is already
-- paused changes nothing and keeps the first paused_at.
INSERT INTO skiplock.paused_job_types (job_type, company_id)
VALUES (%(job_type)s, %(company_id)s::uuid)
ON CONFLICT (job_type, coalesce(company_id, '00000000-0000-0000-0000-000000000000'::uuid))
DO NOTHING
