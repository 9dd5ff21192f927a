-- prune_workers: rows of workers not seen for a day (crashed or killed processes).
DELETE FROM skiplock.workers WHERE last_seen_at < now() - interval '1 day'
