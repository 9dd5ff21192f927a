"""`skiplock …`, the command line: one module per command group.

main.py     the parser, `main()` (the console script) and the admin commands
dev.py      `skiplock dev`: embedded Postgres + API + worker in one process
jobs.py     `skiplock jobs …`, straight on the database, for operators
submit.py   `skiplock submit`, through the HTTP API with the Python client
support.py  what the command modules share (uuid arguments, one connection)
"""

from skiplock.cli.commands import main

__all__ = ["main"]
