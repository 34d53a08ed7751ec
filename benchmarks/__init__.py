"""optimlab's benchmarks: ``python -m benchmarks`` (or ``make bench``) writes BENCHMARKS.md.

``main(argv)`` runs the suite: optimizer steps on every path against the memory-bandwidth
bound (:mod:`benchmarks.bench_optimizers`) and mini-batch plans against DataLoader
(:mod:`benchmarks.bench_plans`), then writes the report (:mod:`benchmarks.report`).
"""

from .suite import main

__all__ = ["main"]
