-- enqueue_scheduled_jobs: the jobs of due schedule ticks, one statement (one notifying
-- commit) for the batch, each an ordinary job: the schedule's type, input, sourceTaskId and
-- priority, with the idempotency key schedule:<schedule id>:<tick>. That key is unique per
-- company, so a tick can never make two jobs (ON CONFLICT DO NOTHING), whatever happens.
-- A tick that would take its company past max_queued (SPEC §3) is skipped.
WITH ticks AS (
    SELECT t.schedule_id, t.key, t.n
    FROM unnest(%(schedule_ids)s::uuid[], %(keys)s::text[]) WITH ORDINALITY AS t (schedule_id, key, n)
),
limits AS (
    -- The companies' max_queued (SPEC §3) and their queued jobs, counted once per company
    -- and no further than the limit, as the insert trigger counts (it enforces the limit
    -- too, under the company's lock; skipping here first keeps one full company from
    -- failing the batch). Companies without a limit are not counted.
    SELECT c.id AS company_id, c.max_queued,
           (SELECT count(*)
            FROM (SELECT 1 FROM skiplock.content_jobs AS j
                  WHERE j.company_id = c.id AND j.status = 'queued'
                  LIMIT c.max_queued + 1) AS q) AS queued
    FROM skiplock.companies AS c
    WHERE c.id IN (SELECT s.company_id FROM skiplock.schedules AS s
                   WHERE s.id = ANY (%(schedule_ids)s::uuid[]))
      AND c.max_queued IS NOT NULL
),
wanted AS (
    SELECT s.company_id, s.job_type, s.input, s.source_task_id, s.priority, t.key, t.n,
           l.max_queued, l.queued,
           row_number() OVER (PARTITION BY s.company_id ORDER BY t.n) AS nth
    FROM ticks AS t
    JOIN skiplock.schedules AS s ON s.id = t.schedule_id
    LEFT JOIN limits AS l ON l.company_id = s.company_id
)
INSERT INTO skiplock.content_jobs (id, company_id, job_type, input, source_task_id, priority,
                                   idempotency_key)
SELECT skiplock.new_job_id(), w.company_id, w.job_type, w.input, w.source_task_id, w.priority, w.key
FROM wanted AS w
WHERE w.max_queued IS NULL OR w.queued + w.nth <= w.max_queued
ORDER BY w.n
ON CONFLICT (company_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id, idempotency_key
