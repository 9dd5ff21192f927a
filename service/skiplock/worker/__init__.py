"""The worker process and everything only it uses.

process.py       the Worker: handler slots, the claim loop (where a job is claimed), shutdown
runner.py        running one job: timeout, stop, storing its output
context.py       the handler's `ctx` (progress, workdir, child processes)
completions.py   outcomes written in batches (done with its asset, failed, requeued)
progress.py      progress writes, throttled per job and batched across jobs
sanitize.py      texts from handlers made storable (NUL, lone surrogates, length)
leases.py        lease renewal and the cancel watch
maintenance.py   housekeeping: rescuing expired leases, pruning events and workers
retry_policy.py  when a failed attempt runs again
webhooks.py      webhook deliveries: claimed in batches, sent concurrently, retried
webhook_http.py  one delivery's POST: checked addresses, keep-alive, the answer's status
schedules.py     schedule ticks: one job per tick, however many workers run
"""

from skiplock.worker.process import (
    Worker,
    WorkerOptions,
    run_until_signalled,
    served_types,
    tune_gc,
)

__all__ = [
    "Worker",
    "WorkerOptions",
    "run_until_signalled",
    "served_types",
    "tune_gc",
]
