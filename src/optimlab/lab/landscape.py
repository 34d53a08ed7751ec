"""``optimlab landscape``: each optimizer's path over the 2-D test functions.

For every test function and every contender the learning rate is chosen by the sweep of
:func:`optimlab.lab.runner.tune` (lowest final value; unless the spec fixes ``lr``), then the
path from the start point is drawn over the function's contour lines. The grid of values and
the contour levels are computed here, by :func:`grid`, so the plotting code only draws.

    >>> from optimlab.lab.functions import FUNCTIONS
    >>> g = grid(FUNCTIONS["quadratic_bowl"], points=5)
    >>> g.x[0], g.x[-1], len(g.values), len(g.values[0]), g.values[2][2]
    (-10.0, 10.0, 5, 5, 0.0)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from . import plots
from .contenders import CONTENDERS, NOTES_CONTENDERS, Contender
from .formatting import value
from .functions import FUNCTIONS, Point, TestFunction
from .problems import FunctionProblem
from .report import Document, Figure, Section, Table
from .rundir import RunFolder
from .runner import DEFAULT_LR_GRID, Budget, Runner, RunResult, RunSpec, Tuning, outcome, tune

__all__ = ["Grid", "LandscapeOptions", "contour_panel", "grid", "run_landscape"]


@dataclass(frozen=True)
class Grid:
    """``values[i][j] = f(x[j], y[i])`` over the plot bounds, and the contour levels to draw."""

    x: list[float]
    y: list[float]
    values: list[list[float]]
    levels: list[float]


def grid(function: TestFunction, points: int = 120, levels: int = 18) -> Grid:
    """Evaluate ``function`` on a ``points`` x ``points`` grid over its bounds.

    The levels are quantiles of the values at squared-spaced probabilities, so that contour
    lines crowd where the function is low (the valleys a reader wants to see) and no single
    steep wall takes every line.
    """
    (x_lo, x_hi), (y_lo, y_hi) = function.bounds
    xs = torch.linspace(x_lo, x_hi, points, dtype=torch.float64)
    ys = torch.linspace(y_lo, y_hi, points, dtype=torch.float64)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    with torch.no_grad():
        values = function.f(torch.stack([xx, yy], dim=-1)).numpy()
    quantiles = np.linspace(0.0, 0.97, levels) ** 2
    contour_levels = np.unique(np.quantile(values, quantiles))
    return Grid(xs.tolist(), ys.tolist(), values.tolist(), contour_levels.tolist())


def contour_panel(
    function: TestFunction,
    surface: Grid,
    paths: dict[str, RunResult],
    title: str | None = None,
    start: Point | None = None,
    legend: bool = True,
) -> plots.ContourPanel:
    """The contour figure panel of ``function`` with the path of each run in ``paths``."""
    lines = [
        plots.Line(label, run.history["x"], run.history["y"], width=1.3)
        for label, run in paths.items()
    ]
    return plots.ContourPanel(
        title or f"{function.title}: {function.formula}",
        surface.x,
        surface.y,
        surface.values,
        surface.levels,
        paths=lines,
        minima=function.minima,
        saddles=function.critical_points,
        start=start or function.start,
        legend=legend,
    )


@dataclass(frozen=True)
class LandscapeOptions:
    functions: tuple[str, ...] = tuple(FUNCTIONS)
    contenders: tuple[Contender, ...] = tuple(CONTENDERS[n] for n in NOTES_CONTENDERS)
    steps: int = 300
    lr_grid: tuple[float, ...] = DEFAULT_LR_GRID
    refine: bool = True
    start: Point | None = None
    animate: bool = False
    device: str = "cpu"
    jobs: int = 1


@dataclass
class LandscapeResult:
    options: LandscapeOptions
    problems: list[FunctionProblem]
    tunings: dict[tuple[str, str], Tuning]
    runs: dict[tuple[str, str], RunResult]
    grids: dict[str, Grid] = field(default_factory=dict)


def run_landscape(
    options: LandscapeOptions, progress: Callable[[str, int], Callable[[], None]] | None = None
) -> LandscapeResult:
    """Tune each contender on each function, then keep the run at the chosen learning rate."""
    problems = [FunctionProblem(FUNCTIONS[name], start=options.start) for name in options.functions]
    pairs = [(p, c) for p in problems for c in options.contenders]
    budget = Budget(steps=options.steps)
    with Runner(options.jobs, progress) as runner:
        tuned = tune(
            runner,
            pairs,
            grid=options.lr_grid,
            seeds=[0],
            budget=budget,
            eval_every=lambda p: 1,
            refine=options.refine,
            device=options.device,
        )
        tunings = {(p.name, c.name): tuning for (p, c), tuning in tuned.items()}
        specs = [
            RunSpec(p, c, tunings[(p.name, c.name)].lr, 0, options.steps, 1, options.device)
            for p, c in pairs
        ]
        results = runner.run(specs, "paths")
    runs = {(s.problem.name, s.contender.name): r for s, r in zip(specs, results)}
    grids = {p.name: grid(p.function) for p in problems}
    return LandscapeResult(options, problems, tunings, runs, grids)


def _frames(steps: int, count: int = 40) -> list[int]:
    # Which prefix of each path every GIF frame shows: early steps move most, so frames are
    # spaced on a square-root scale, from the start point alone to the whole path.
    return sorted({1 + round(steps * (k / (count - 1)) ** 2) for k in range(count)})


def _paths_figure(
    result: LandscapeResult,
    folder: RunFolder,
    problem: FunctionProblem,
    paths: dict[str, RunResult],
    names: list[str],
) -> list[Figure]:
    """The paths over the contour lines beside the value along each path (and the GIF)."""
    function = problem.function
    start = problem.start_point(0)
    contour = contour_panel(function, result.grids[problem.name], paths, start=start)
    metric = problem.curve_metric
    curve = plots.Panel(
        f"{function.title}: {'f - f*' if metric == 'gap' else 'f'} along the path",
        "step",
        "f - f*" if metric == "gap" else "f",
        lines=[plots.Line(c, run.history["step"], run.history[metric]) for c, run in paths.items()],
        yscale="log" if metric == "gap" else "linear",
        legend=False,
    )
    stem = f"figures/landscape_{problem.name}"
    plots.draw([contour, curve], folder.file(stem), order=names, size=(5.6, 4.4))
    figures = [Figure(f"{stem}.png", f"{function.title} ({function.about}): paths and values.")]
    if result.options.animate:
        plots.animate(
            contour, folder.file(f"{stem}.gif"), frames=_frames(result.options.steps), order=names
        )
        figures.append(Figure(f"{stem}.gif", f"{function.title}: the paths, step by step."))
    return figures


def _sweep_rows(problem: FunctionProblem, contender: str, tuning: Tuning) -> list[dict]:
    return [
        {
            "function": problem.name,
            "optimizer": contender,
            "lr": lr,
            "final_value": score,
            "chosen": lr == tuning.lr,
        }
        for lr, score in tuning.scores.items()
    ]


def _paths_table_row(
    problem: FunctionProblem, contender: str, tuning: Tuning, numbers: dict[str, float]
) -> list[str]:
    return [
        problem.function.title,
        contender,
        value(tuning.lr, "lr") + (" (fixed)" if tuning.fixed else ""),
        f"({numbers['x']:.3g}, {numbers['y']:.3g})",
        value(numbers["loss"], "float"),
        value(numbers["distance"], "sci"),
        value(numbers["steps_to_target"], "steps"),
    ]


def _paths_table(table_rows: list[list[str]]) -> Table:
    return Table(
        "paths",
        "Where each optimizer ended",
        [
            "function",
            "optimizer",
            "lr",
            "end point",
            "f",
            "distance to minimum",
            "steps to gap <= 1e-3",
        ],
        table_rows,
    )


def _path_rows(result: LandscapeResult):
    """Every point of every path: paths.csv."""
    for (p, c), run in result.runs.items():
        history = run.history
        for s, x, y, f in zip(history["step"], history["x"], history["y"], history["loss"]):
            yield {"function": p, "optimizer": c, "step": s, "x": x, "y": y, "loss": f}


def write_landscape(result: LandscapeResult, folder: RunFolder) -> Document:
    """Figures (per function: paths on contours, value against step), CSVs and the summary."""
    names = [c.name for c in result.options.contenders]
    rows, sweep_rows, figures = [], [], []
    table_rows: list[list[str]] = []
    for problem in result.problems:
        paths = {c: result.runs[(problem.name, c)] for c in names}
        figures += _paths_figure(result, folder, problem, paths, names)
        for contender, run in paths.items():
            tuning = result.tunings[(problem.name, contender)]
            numbers = outcome(run)
            rows.append(
                {"function": problem.name, "optimizer": contender, "lr": tuning.lr, **numbers}
            )
            sweep_rows += _sweep_rows(problem, contender, tuning)
            table_rows.append(_paths_table_row(problem, contender, tuning, numbers))
    folder.write_csv("metrics.csv", rows)
    folder.write_csv("sweep.csv", sweep_rows)
    folder.write_csv("paths.csv", _path_rows(result))
    folder.write_json("metrics.json", {"runs": rows, "sweep": sweep_rows})
    fixed = [t.fixed for t in result.tunings.values()]
    rates = (
        "learning rates as given"
        if all(fixed)
        else "learning rates tuned per function" + (", some as given" if any(fixed) else "")
    )
    return Document(
        "optimlab landscape",
        f"{len(result.problems)} test functions, {len(names)} optimizers, "
        f"{result.options.steps} steps, {rates}",
        [Section("Paths", [], [_paths_table(table_rows)], figures)],
    )
