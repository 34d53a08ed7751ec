"""``python -m benchmarks`` from the repository root: the same as ``optimlab bench``.

The suite itself lives in the package (:mod:`optimlab.benchmarks`), so an installed optimlab
has it too; this folder keeps the old entry point and the full run's plot and rows
(``optimizer_steps.png``, ``results.json``; a ``--quick`` run writes into ``quick/``).
"""

from optimlab.benchmarks import main

__all__ = ["main"]
