"""optimlab's benchmark suite: ``optimlab bench`` (or ``make bench``) writes BENCHMARKS.md.

Parts: optimizer steps on every optimlab and torch.optim path against the memory-bandwidth
bound (:mod:`.bench_optimizers`), mini-batch plans against ``DataLoader``
(:mod:`.bench_plans`), the training loop against a hand-written loop (:mod:`.bench_train`);
:mod:`.report` turns the rows into the report and a plot. :mod:`.bench_distributed` (run by
itself) times ``fit`` on one and on two processes.

``main(argv)`` runs the command as ``optimlab bench`` does and returns its exit status.
"""

from __future__ import annotations

from .suite import BenchError, Options, run

__all__ = ["BenchError", "Options", "main", "run"]


def main(argv: list[str] | None = None, prog: str = "python -m optimlab.benchmarks") -> int:
    """Run ``bench`` with ``argv`` (default: the command line); return the exit status."""
    import sys

    import click

    from ..cli.bench import bench

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        obj = {"argv": args, "prog": prog}
        code = bench.main(args, prog_name=prog, standalone_mode=False, obj=obj)
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.Abort:
        return 130
    return code if isinstance(code, int) else 0
