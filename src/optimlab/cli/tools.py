"""The tools around the lab: ``optimlab build`` (the fused path's kernels) and ``optimlab list``."""

from __future__ import annotations

from typing import Any

import click

from ..lab.contenders import NOTES_CONTENDERS
from ..lab.datasets import DATASETS
from ..lab.functions import FUNCTIONS
from .options import debug_option

__all__ = ["COMMANDS", "LISTS", "build", "list_"]

LISTS = ("optimizers", "schedules", "problems", "datasets")


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


@click.command("list")
@click.argument("what", required=False, type=click.Choice([*LISTS, "all"]), default="all")
@debug_option
def list_(what: str) -> None:
    """List the optimizers, schedules, problems and data sets, one line each."""
    from ..lab.contenders import CONTENDERS
    from ..optim import REGISTRY
    from ..schedules import SCHEDULES

    def first_line(obj: Any) -> str:
        return (obj.__doc__ or "").strip().splitlines()[0].replace("``", "") if obj.__doc__ else ""

    sections = {
        # every optimizer of the registry, each followed by the lab's variants of it
        "optimizers": [
            (
                c.name,
                f"{c.title}: {c.about}; {c.describe()}"
                + (" [compare default]" if c.name in NOTES_CONTENDERS else "")
                + (" [beyond the notes]" if REGISTRY[c.optimizer].family == "beyond" else ""),
            )
            for c in CONTENDERS.values()
        ],
        "schedules": [(name, first_line(cls)) for name, cls in SCHEDULES.items()],
        "problems": [(f.name, f"{f.title}: {f.formula}; {f.about}") for f in FUNCTIONS.values()],
        "datasets": [(d.name, f"{d.title}: {d.about}") for d in DATASETS.values()],
    }
    chosen = LISTS if what == "all" else (what,)
    for i, name in enumerate(chosen):
        if i:
            click.echo()
        click.echo(f"{name}:")
        width = max(len(key) for key, _ in sections[name])
        for key, text in sections[name]:
            click.echo(f"  {key:<{width}}  {text}")


COMMANDS = (build, list_)
