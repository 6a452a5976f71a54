"""``python -m secure_ml`` is the ``secure-ml`` command."""

from secure_ml.cli import main

raise SystemExit(main())
