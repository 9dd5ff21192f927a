-- claim_jobs: lease up to %(limit)s due jobs of this worker's types, companies taking turns
-- (SPEC §3: one job per company with due work per turn; within a company priority DESC,
-- run_at, id; paused types and companies at their max_running passed over). The walk, the
-- locking and the events are skiplock.claim_content_jobs() (sql/0006.fair-claiming.sql),
-- one statement and one notifying commit for the batch. %(after)s is the company the
-- worker's previous claim ended on: the turn goes on after it. The rows come in turn order,
-- with only what the worker uses (each column costs the worker's Python per job to read).
SELECT id, company_id, job_type, input, source_task_id, attempts, max_attempts, timeout_seconds
FROM skiplock.claim_content_jobs(%(worker_id)s, %(job_types)s::text[], %(limit)s,
                                 %(lease_seconds)s, %(after)s::uuid)
