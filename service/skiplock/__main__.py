"""`python -m skiplock` is the same CLI as `skiplock`."""

from skiplock.cli import main

raise SystemExit(main())
