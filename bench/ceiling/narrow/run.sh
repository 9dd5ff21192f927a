#!/usr/bin/env bash
# pgbench of the narrow sketch (setup.sql, claim_finish.sql): jobs/s and µs per job on one
# connection, claims of 100, with job ids made in time order (skiplock.new_job_id()'s
# layout, sql/0010) or at random (gen_random_uuid()), with or without the event rows.
#   bench/ceiling/narrow/run.sh postgresql://…/disposable_db ordered|random events|no-events
# The database is disposable: setup.sql drops and makes its two tables.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
url="$1"; ids="$2"; events="$3"
rounds=100 batch=100
case "$ids" in
    ordered) id="(lpad(to_hex(g), 8, '0') || substr(md5(g::text), 9))::uuid" ;;
    random) id="gen_random_uuid()" ;;
    *) echo "ids: ordered or random" >&2; exit 2 ;;
esac
case "$events" in events) ev=true ;; no-events) ev=false ;; *) echo "events or no-events" >&2; exit 2 ;; esac
company="$(python3 -c 'import uuid; print(uuid.uuid4())')"
psql -q -v ON_ERROR_STOP=1 "$url" -f "$here/setup.sql" >/dev/null 2>&1
psql -q -v ON_ERROR_STOP=1 "$url" \
    -c "INSERT INTO narrow_jobs (id, company_id, job_type)
        SELECT $id, '$company', 'noop' FROM generate_series(1, $(( (rounds + 10) * batch ))) AS g" \
    -c "ANALYZE narrow_jobs" >/dev/null
bindir="$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -n 1 || true)"
pgbench="${bindir:+$bindir/}pgbench"
command -v "$pgbench" >/dev/null || pgbench=pgbench
"$pgbench" -n -M prepared -c 1 -t "$rounds" -D batch="$batch" -D company="$company" \
    -D events="$ev" -f "$here/claim_finish.sql" "$url" 2>&1 |
    awk -v b="$batch" '/^tps/ { printf "%.0f jobs/s, %.1f us a job\n", $3 * b, 1e6 / ($3 * b) }'
