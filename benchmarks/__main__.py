"""``python -m benchmarks [--quick] [--device cuda] ...``: see ``optimlab bench --help``."""

from optimlab.benchmarks import main

raise SystemExit(main(prog="python -m benchmarks"))
