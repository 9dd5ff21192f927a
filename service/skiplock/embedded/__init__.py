"""The embedded Postgres of `skiplock dev`.

cluster.py   EmbeddedPostgres: init, start, adopt and stop a cluster under a data dir
binaries.py  finding the PostgreSQL server binaries (system packages, pgserver wheel)
process.py   running them, as the `postgres` OS user when we are root
"""

from skiplock.embedded.binaries import EmbeddedPostgresError, find_postgres_bindir
from skiplock.embedded.cluster import EmbeddedPostgres

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError", "find_postgres_bindir"]
