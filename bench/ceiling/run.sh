#!/usr/bin/env bash
# The raw Postgres ceiling for skiplock's write pattern, measured with pgbench.
#   DATABASE_URL=postgresql://…/db bench/ceiling/run.sh [seconds]
# Needs a migrated database (skiplock migrate) it may fill with rows. Prints one line per
# case: transactions/s and jobs/s. The cases live in ceiling.py (also run by skiplock bench).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec "${PYTHON:-$here/../../.venv/bin/python}" "$here/ceiling.py" "$@"
