"""``python -m stagewise``: the same program as the ``stagewise`` command."""

from stagewise.cli.main import main

raise SystemExit(main())
