-- unregister_worker: a worker that exits cleanly removes its row (a crashed one's row goes
-- stale and is pruned by prune_workers).
DELETE FROM skiplock.workers WHERE id = %(id)s
