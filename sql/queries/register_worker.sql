-- register_worker: a row per worker process start; its id is the locked_by of its jobs.
INSERT INTO skiplock.workers (id, hostname, pid, job_types, concurrency)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(job_types)s, %(concurrency)s)
ON CONFLICT (id) DO UPDATE SET last_seen_at = now()
