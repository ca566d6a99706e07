"""``python -m rfmap``."""

from rfmap.cli import main

raise SystemExit(main())
