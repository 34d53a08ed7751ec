"""``optimlab schedule``: the learning rate of one or more schedules over the steps.

Each spec is parsed by :func:`optimlab.schedules.from_spec` (``"step_decay:lr=0.1,gamma=0.9,
step_size=1000"``) and evaluated at every step; the values are written to ``values.csv`` and
drawn. ``reduce_on_plateau`` is refused: its learning rate depends on a metric, not on the step.

    >>> curves = schedule_values(["step_decay:lr=0.1,gamma=0.5,step_size=2"], steps=5)
    >>> curves["step_decay:lr=0.1,gamma=0.5,step_size=2"]
    [0.1, 0.1, 0.05, 0.05, 0.025]
"""

from __future__ import annotations

from collections.abc import Sequence

from ..schedules import ReduceOnPlateau, from_spec
from . import plots
from .formatting import value
from .report import Document, Figure, Section, Table
from .rundir import RunFolder

__all__ = ["parse_schedule", "schedule_values", "write_schedules"]


def parse_schedule(spec: str):
    """The schedule a spec describes; ValueError/TypeError name the bad part."""
    schedule = from_spec(spec)
    if isinstance(schedule, ReduceOnPlateau):
        raise ValueError(
            f"{spec!r}: reduce_on_plateau follows a validation metric, so it has no curve over "
            "steps alone; plot it from a training run instead"
        )
    return schedule


def schedule_values(specs: Sequence[str], steps: int) -> dict[str, list[float]]:
    """``{spec: [lr(0), lr(1), ..., lr(steps - 1)]}``."""
    return {spec: [parse_schedule(spec)(t) for t in range(steps)] for spec in specs}


def write_schedules(values: dict[str, list[float]], folder: RunFolder, log: bool) -> Document:
    """values.csv, figures/schedule (PNG, SVG) and the summary of the schedules."""
    specs = list(values)
    steps = len(next(iter(values.values())))
    folder.write_csv(
        "values.csv", ({"step": t, **{s: values[s][t] for s in specs}} for t in range(steps))
    )
    folder.write_json("metrics.json", {"steps": steps, "values": values})
    panel = plots.Panel(
        "Learning-rate schedules",
        "step",
        "learning rate",
        [plots.Line(spec, list(range(steps)), values[spec], style="steps") for spec in specs],
        yscale="log" if log else "linear",
    )
    plots.draw([panel], folder.file("figures/schedule"), size=(8, 4.5))
    checkpoints = sorted({0, steps // 4, steps // 2, (3 * steps) // 4, steps - 1})
    table = Table(
        "values",
        "Learning rate at a few steps",
        ["schedule", *[f"step {t}" for t in checkpoints]],
        [[spec, *[value(values[spec][t], "lr") for t in checkpoints]] for spec in specs],
    )
    return Document(
        "optimlab schedule",
        f"{len(specs)} schedule(s) over {steps} steps",
        [
            Section(
                "Schedules",
                [],
                [table],
                [Figure("figures/schedule.png", "Learning rate against step.")],
            )
        ],
    )
