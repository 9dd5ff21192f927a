#!/usr/bin/env bash
# The raw Postgres ceiling for skiplock's write pattern, measured with pgbench.
#   DATABASE_URL=postgresql://…/db bench/ceiling/run.sh [seconds]
# Needs a migrated database (skiplock migrate) it may fill with rows. Prints one line per
# case: transactions/s (and jobs/s for the batched claim+complete).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
url="${DATABASE_URL:?set DATABASE_URL to a migrated, disposable database}"
secs="${1:-10}"
pgbench="$(ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | tail -1 || command -v pgbench)"
psql -q -v ON_ERROR_STOP=1 -d "$url" -f "$here/setup.sql"
company="$(psql -qAt -d "$url" -c "INSERT INTO skiplock.companies (name) VALUES ('bench') RETURNING id")"

tps() {  # script clients [extra pgbench args…]
    local script=$1 clients=$2; shift 2
    "$pgbench" -n -M prepared -c "$clients" -j "$clients" "$@" -f "$here/$script" "$url" 2>/dev/null \
        | awk '/^tps = /{printf "%.0f", $3}'
}
fill() {  # n jobs, bulk, with the event log off so filling is quick
    psql -q -d "$url" -c "ALTER TABLE skiplock.content_jobs DISABLE TRIGGER USER" \
        -c "INSERT INTO skiplock.content_jobs (company_id, job_type) SELECT '$company', 'noop' FROM generate_series(1, $1)" \
        -c "ALTER TABLE skiplock.content_jobs ENABLE TRIGGER USER" -c "ANALYZE skiplock.content_jobs"
}
echo "case | clients | tx/s | jobs/s"
for c in ${CLIENTS:-1 8}; do
    echo "INSERT, plain | $c | $(tps insert_plain.sql $c -T "$secs") |"
    echo "INSERT + event-log row | $c | $(tps insert_log.sql $c -T "$secs") |"
    echo "INSERT + NOTIFY | $c | $(tps insert_notify.sql $c -T "$secs") |"
    echo "skiplock enqueue_content_job() | $c | $(tps skiplock_enqueue.sql $c -T "$secs" -D company="$company") |"
done
for batch in 1 100; do
    for c in 1 2; do
        rounds=$(( batch == 1 ? 4000 : 150 ))
        fill $(( rounds * batch * c + 1000 ))
        t=$(tps skiplock_claim_complete.sql "$c" -t "$rounds" -D batch="$batch")
        echo "skiplock claim+complete, batch $batch | $c | $t | $(( t * batch ))"
        psql -q -d "$url" -c "DELETE FROM skiplock.content_jobs" -c "DELETE FROM skiplock.content_job_events"
    done
done
