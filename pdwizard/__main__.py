"""`python -m pdwizard` is the same as the `pdwizard` command."""

from pdwizard.cli import main

raise SystemExit(main())
