"""``python -m optimlab.benchmarks [--quick] [--device cuda] ...``: as ``optimlab bench``."""

from . import main

raise SystemExit(main())
