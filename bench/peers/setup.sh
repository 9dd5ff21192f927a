#!/usr/bin/env bash
# Creates bench/.venv with the pinned peer libraries (bench/peers/requirements.txt).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/../.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q -r "$here/requirements.txt"
"$venv/bin/python" -c "import pgqueuer, procrastinate, chancy; print('peers ready')"
