-- next_schedule_due: when the earliest schedule is due (null with none), so the worker's
-- ticker sleeps until then rather than a whole poll interval.
SELECT min(next_run_at) - now() AS wait
FROM skiplock.schedules
