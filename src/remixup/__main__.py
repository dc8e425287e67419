"""``python -m remixup``: the same as the ``remixup`` command."""

from remixup.cli import main

raise SystemExit(main())
