"""``python -m harness``: the same command line as the installed ``harness``."""

from harness.cli import main

raise SystemExit(main())
