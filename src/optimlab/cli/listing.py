"""``optimlab list``: every name the commands take, one line each, answered without torch.

The lines are kept in :mod:`._listing_index`, written from the live objects (the registry, the
lab's contenders, schedules, test functions and data sets) by ``python -m
optimlab.cli.listing``; a test checks that the kept lines are the live ones. Importing those
objects imports torch (about 2 s); reading the kept lines takes a few milliseconds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from .options import debug_option

__all__ = ["LISTS", "list_", "live_sections", "write_index"]

LISTS = ("optimizers", "schedules", "problems", "datasets", "escape-problems", "escape-methods",
         "escape-remedies")  # fmt: skip
INDEX = Path(__file__).with_name("_listing_index.py")


def live_sections() -> dict[str, list[tuple[str, str]]]:
    """Each list's (name, line) pairs, from the objects themselves (imports torch)."""
    from ..lab.contenders import CONTENDERS, NOTES_CONTENDERS
    from ..lab.datasets import DATASETS
    from ..lab.escape.problems import PROBLEMS
    from ..lab.escape.study import METHODS, REMEDIES, REMEDY_ABOUT
    from ..lab.functions import FUNCTIONS
    from ..optim import REGISTRY
    from ..schedules import SCHEDULES

    def first_line(obj: Any) -> str:
        return (obj.__doc__ or "").strip().splitlines()[0].replace("``", "") if obj.__doc__ else ""

    return {
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
        # optimlab escape's --problems, --methods and --remedies
        "escape-problems": [(p.name, f"{p.kind}: {p.description}") for p in PROBLEMS.values()],
        "escape-methods": [(m.name, m.label) for m in METHODS.values()],
        "escape-remedies": [(name, REMEDY_ABOUT[name]) for name in REMEDIES],
    }


def write_index(path: Path = INDEX) -> None:
    """Write the live lines to ``path`` as the module :mod:`._listing_index`."""
    lines = [
        '"""What ``optimlab list`` prints: written by ``python -m optimlab.cli.listing`` from the',
        'objects themselves; tests/test_cli.py checks it is current. Do not edit."""',
        "",
        "SECTIONS = {",
    ]
    for section, rows in live_sections().items():
        lines.append(f"    {json.dumps(section)}: [")
        lines += [f"        ({json.dumps(name)}, {json.dumps(text)})," for name, text in rows]
        lines.append("    ],")
    path.write_text("\n".join([*lines, "}", ""]))


@click.command("list")
@click.argument("what", required=False, type=click.Choice([*LISTS, "all"]), default="all")
@debug_option
def list_(what: str) -> None:
    """List the optimizers, schedules, problems and data sets, and escape's problems, methods
    and remedies, one line each."""
    from ._listing_index import SECTIONS

    chosen = LISTS if what == "all" else (what,)
    for i, name in enumerate(chosen):
        if i:
            click.echo()
        click.echo(f"{name}:")
        width = max(len(key) for key, _ in SECTIONS[name])
        for key, text in SECTIONS[name]:
            click.echo(f"  {key:<{width}}  {text}")


if __name__ == "__main__":
    write_index()
    print(f"wrote {INDEX}", file=sys.stderr)
