"""The tools around the lab: ``optimlab build`` (the fused path's kernels)."""

from __future__ import annotations

import click

from .options import debug_option

__all__ = ["COMMANDS", "build"]


@click.command("build")
@debug_option
def build() -> None:
    """Compile the fused path's kernels and C++ plan checks for this machine, once.

    Every optimizer's default configuration (and the notes' common variants), for float32 and
    float64, into the kernel cache; about 35 s the first time, a few seconds after. ``make run``
    and ``make test`` run it; a configuration not built ahead compiles in its first step.
    """
    from ..fused.build import build as build_all

    build_all(lambda line: click.echo(f"optimlab build: {line}", err=True))


COMMANDS = (build,)
