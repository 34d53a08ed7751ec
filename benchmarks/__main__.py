"""``python -m benchmarks [--quick] [--device cuda] ...``: see ``python -m benchmarks --help``."""

from . import main

raise SystemExit(main())
