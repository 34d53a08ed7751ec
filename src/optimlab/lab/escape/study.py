"""The escape study: which remedy gets which optimizer out of which trap, how often, how fast.

For every problem of :mod:`optimlab.lab.escape.problems` (three saddles, three functions with many
minima, a small network), every method (full-batch gradient descent, mini-batch SGD, momentum,
Adam) and every remedy (none, gradient noise, random restarts, annealing), the study runs
:func:`~optimlab.lab.escape.descend` from ``seeds`` seeds with the same budget of steps, and
records whether the run succeeded (escaped the saddle, reached the global minimum within the
tolerance), after how many steps and seconds. A last method, ``metropolis``, is the gradient-free
:func:`~optimlab.remedies.simulated_annealing` on its own.

Every remedy gets the same number of optimizer steps per seed: random restarts split the budget
into ``restarts`` runs from random starts; annealing evaluates the loss twice per step (its
seconds show that cost). The hyperparameters of each problem are in :data:`SETTINGS` and in the
report.

Run it with ``optimlab escape`` or :func:`escape_main`; it writes ``escape_results.csv`` (one
row per cell), ``escape_runs.csv`` (one row per run), ``escape_results.md`` (the tables) and
four figures into its ``figures/`` folder.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ... import checks, schedules
from ...files import write_text
from ...optim import SGD, Adam, Momentum
from ...remedies.annealing import simulated_annealing
from ...remedies.base import derive_seed
from ...remedies.restarts import map_in_processes, random_restarts
from .descent import descend
from .problems import PROBLEMS, Problem

__all__ = [
    "METHODS",
    "REMEDIES",
    "SETTINGS",
    "CellSummary",
    "Method",
    "RunRecord",
    "Settings",
    "StudyReport",
    "escape_main",
    "run_study",
    "summarize",
    "wilson_interval",
]


# --- what is compared ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Method:
    """An optimizer and the batches it sees."""

    name: str
    label: str
    optimizer: Any  # an optimizer class, or None for the gradient-free walk
    #: "lr" or "adam_lr": which learning rate of the problem's settings it uses
    lr_key: str = "lr"
    minibatch: bool = False
    extra: tuple[tuple[str, Any], ...] = ()


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("gd", "full-batch GD", SGD),
        Method("sgd", "mini-batch SGD", SGD, minibatch=True),
        Method("momentum", "momentum (beta 0.9)", Momentum, extra=(("beta", 0.9),)),
        Method("adam", "Adam", Adam, lr_key="adam_lr"),
        Method("metropolis", "Metropolis walk (no gradient)", None),
    )
}

#: The remedies, in the order of the report's columns.
REMEDIES = ("plain", "noise", "restarts", "annealing")
REMEDY_LABELS = {
    "plain": "plain",
    "noise": "+ noise",
    "restarts": "+ restarts",
    "annealing": "+ annealing",
}
#: what each remedy does, as ``optimlab list escape-remedies`` says it
REMEDY_ABOUT = {
    "plain": "the method alone, for the whole budget",
    "noise": "Gaussian gradient noise of variance eta / (1 + t)^0.55 (GradientNoise)",
    "restarts": "the budget split into runs from uniform random starts, the best kept",
    "annealing": "simulated annealing around the method: Metropolis jumps, temperature decaying",
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """One problem's hyperparameters, the same for every method and seed.

    ``steps`` is the budget per seed. Gradient noise has variance ``eta / (1 + t) ** 0.55``.
    Restarts run ``restarts`` times for ``steps // restarts`` steps each. Annealing cools
    exponentially from ``temperature`` to ``temperature / 100`` over the budget and proposes
    jumps of standard deviation ``perturbation_std`` (the gradient-free walk shrinks them by the
    same factor, since it has no optimizer to do the fine descent).
    """

    lr: float
    adam_lr: float
    steps: int
    eta: float
    temperature: float
    perturbation_std: float
    restarts: int
    batch_size: int = 8
    gamma: float = 0.55

    def temperature_schedule(self) -> str:
        return f"exponential_decay:lr={self.temperature:g},decay_rate=0.01,decay_steps={self.steps}"

    def walk_std_schedule(self) -> str:
        std = self.perturbation_std
        return f"exponential_decay:lr={std:g},decay_rate=0.01,decay_steps={self.steps}"


# Chosen for full-batch GD on seeds 100-111 (never reported): the learning rate from the
# curvature (stable at the box's edge), then eta from {1e-2 .. 1e5} by powers of 10 and
# (temperature, jump std) from a few pairs around the scale of the loss and of a basin.
SETTINGS: dict[str, Settings] = {
    "saddle": Settings(
        lr=0.1, adam_lr=0.05, steps=200, eta=0.1, temperature=0.5, perturbation_std=0.1, restarts=5
    ),
    "monkey_saddle": Settings(
        lr=0.1, adam_lr=0.05, steps=200, eta=0.1, temperature=0.5, perturbation_std=0.1, restarts=5
    ),
    "quadratic_saddle": Settings(
        lr=0.1, adam_lr=0.05, steps=300, eta=0.1, temperature=0.5, perturbation_std=0.05, restarts=5
    ),
    "rastrigin": Settings(
        lr=0.002,
        adam_lr=0.05,
        steps=400,
        eta=1e4,
        temperature=5.0,
        perturbation_std=1.0,
        restarts=10,
    ),
    "six_hump_camel": Settings(
        lr=0.003,
        adam_lr=0.05,
        steps=300,
        eta=1e4,
        temperature=1.0,
        perturbation_std=0.5,
        restarts=5,
    ),
    "himmelblau": Settings(
        lr=0.005,
        adam_lr=0.1,
        steps=300,
        eta=1e3,
        temperature=1.0,
        perturbation_std=0.5,
        restarts=5,
    ),
    "tiny_network": Settings(
        lr=0.2,
        adam_lr=0.05,
        steps=300,
        eta=1.0,
        temperature=0.1,
        perturbation_std=0.3,
        restarts=3,
    ),
}


# --- one run -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Task:
    problem: str
    method: str
    remedy: str
    seed: int
    record_path: bool = False
    #: a run for the annealing figure only: the whole budget, even after success
    trace: bool = False


@dataclasses.dataclass
class RunRecord:
    """One seed of one cell, as plain values (a row of ``escape_runs.csv``)."""

    problem: str
    method: str
    remedy: str
    seed: int
    success: bool
    steps_to_target: int | None
    seconds_to_target: float | None
    steps: int
    seconds: float
    final_loss: float
    best_loss: float
    diverged: bool
    acceptance_rate: float | None = None
    #: for restarts: how many runs it took to succeed
    restarts_used: int | None = None
    #: for the figures only (not written to the CSV)
    paths: list[list[list[float]]] | None = dataclasses.field(default=None, repr=False)
    accepted: list[bool] | None = dataclasses.field(default=None, repr=False)
    #: a figure's run, not counted in any table (see Task.trace)
    trace: bool = dataclasses.field(default=False, repr=False)


CSV_FIELDS = [
    f.name for f in dataclasses.fields(RunRecord) if f.name not in ("paths", "accepted", "trace")
]


def _descend_kwargs(problem: Problem, method: Method, settings: Settings) -> dict[str, Any]:
    return dict(
        lr=getattr(settings, method.lr_key),
        batch_size=settings.batch_size if method.minibatch else None,
        # descend checks the loss at every point and reports divergence itself, so the
        # optimizer's own check of every gradient (a sixth of a step's time here) is not needed.
        nonfinite_grads="ignore",
        **dict(method.extra),
    )


def run_task(task: Task) -> RunRecord:
    """Run one seed of one cell of the study."""
    problem, method = PROBLEMS[task.problem], METHODS[task.method]
    settings = SETTINGS[task.problem]
    common = dict(problem=task.problem, method=task.method, remedy=task.remedy, seed=task.seed)
    if method.optimizer is None:
        return _run_walk(task, problem, settings, common)
    kwargs = _descend_kwargs(problem, method, settings)
    if task.remedy == "restarts":
        return _run_restarts(task, problem, method, settings, kwargs, common)
    options: dict[str, Any] = {}
    if task.remedy == "noise":
        options["noise"] = dict(eta=settings.eta, gamma=settings.gamma)
    elif task.remedy == "annealing":
        options["annealing"] = dict(
            temperature=settings.temperature_schedule(),
            perturbation_std=settings.perturbation_std,
        )
    r = descend(
        problem,
        method.optimizer,
        task.seed,
        steps=settings.steps,
        record_path=task.record_path,
        stop_at_target=not task.trace,
        **options,
        **kwargs,
    )
    return RunRecord(
        **common,
        success=r.succeeded,
        steps_to_target=r.steps_to_target,
        seconds_to_target=r.seconds_to_target,
        steps=r.steps,
        seconds=r.seconds,
        final_loss=r.loss,
        best_loss=r.best_loss,
        diverged=r.diverged,
        acceptance_rate=r.acceptance.acceptance_rate if r.acceptance is not None else None,
        paths=[r.path] if r.path is not None else None,
        accepted=r.accepted if task.trace else None,
        trace=task.trace,
    )


def _run_restarts(task, problem, method, settings, kwargs, common) -> RunRecord:
    job = functools.partial(
        descend,
        problem,
        method.optimizer,
        steps=settings.steps // settings.restarts,
        random_start=True,
        record_path=task.record_path,
        **kwargs,
    )
    report = random_restarts(job, settings.restarts, seed=task.seed)
    results = [run.result for run in report.runs]
    first = next((i for i, r in enumerate(results) if r.succeeded), None)
    steps_to_target = seconds_to_target = None
    if first is not None:
        steps_to_target = sum(r.steps for r in results[:first]) + results[first].steps_to_target
        seconds_to_target = (
            sum(r.seconds for r in results[:first]) + results[first].seconds_to_target
        )
    best = report.best.result
    return RunRecord(
        **common,
        success=first is not None,
        steps_to_target=steps_to_target,
        seconds_to_target=seconds_to_target,
        steps=sum(r.steps for r in results),
        seconds=sum(r.seconds for r in results),
        final_loss=best.loss,
        best_loss=min(r.best_loss for r in results),
        diverged=all(r.diverged for r in results),
        restarts_used=None if first is None else first + 1,
        paths=[r.path for r in results] if task.record_path else None,
    )


def _run_walk(task, problem, settings, common) -> RunRecord:
    if task.remedy != "annealing":
        raise ValueError(f"the Metropolis walk is itself annealing; got remedy {task.remedy!r}")
    seed = task.seed
    if problem.start is not None:
        x0 = torch.tensor(problem.start, dtype=torch.float64)
    else:
        # The start descend would draw for this seed, so the walk starts where the others do.
        generator = torch.Generator().manual_seed(derive_seed(seed, 1))
        x0 = problem.random_start(generator, torch.float64)
    r = simulated_annealing(
        problem.objective,
        x0,
        temperature=settings.temperature_schedule(),
        perturbation_std=settings.walk_std_schedule(),
        steps=settings.steps,
        seed=derive_seed(seed, 4),
        target=problem.target,
    )
    reached = r.steps_to_target is not None
    return RunRecord(
        **common,
        success=reached,
        steps_to_target=r.steps_to_target,
        seconds_to_target=r.seconds if reached else None,  # the walk stops at the target
        steps=r.steps,
        seconds=r.seconds,
        final_loss=r.loss,
        best_loss=r.best_loss,
        diverged=not math.isfinite(r.loss),
        acceptance_rate=r.stats.acceptance_rate,
    )


# --- the grid and its summary --------------------------------------------------------------------


def cells(
    problems: Sequence[str], methods: Sequence[str], remedies: Sequence[str]
) -> list[tuple[str, str, str]]:
    """Every (problem, method, remedy) the study runs; the walk only with annealing."""
    out = []
    for p in problems:
        for m in methods:
            for r in remedies:
                if METHODS[m].optimizer is None and r != "annealing":
                    continue
                out.append((p, m, r))
    return out


def _records_path(problem: str, method: str, seed: int) -> bool:
    # Paths are kept for the trajectory figure: seed 0, gradient descent, 2-d problems.
    return seed == 0 and method == "gd" and PROBLEMS[problem].dim == 2


def run_study(
    problems: Sequence[str],
    methods: Sequence[str],
    remedies: Sequence[str],
    seeds: int,
    processes: int = 1,
    log: Callable[[str], None] | None = None,
    traces: bool = False,
) -> list[RunRecord]:
    """Run every cell for seeds ``0 .. seeds - 1``; the records come back in grid order.

    With ``traces`` one more record per problem, marked ``trace``, follows them: seed 0 of
    gradient descent with annealing run for its whole budget, for the acceptance figure.
    """
    tasks = [
        Task(p, m, r, s, record_path=_records_path(p, m, s))
        for p, m, r in cells(problems, methods, remedies)
        for s in range(seeds)
    ]
    if traces:
        tasks += [Task(p, "gd", "annealing", 0, trace=True) for p in problems]
    if log:
        log(f"escape study: {len(tasks)} runs in {processes} process(es)")
    return map_in_processes(run_task, tasks, processes)


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a success rate (95% by default).

    >>> [round(v, 3) for v in wilson_interval(20, 20)]
    [0.839, 1.0]
    """
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclasses.dataclass
class CellSummary:
    """One (problem, method, remedy) over all seeds: a row of ``escape_results.csv``."""

    problem: str
    method: str
    remedy: str
    seeds: int
    successes: int
    success_rate: float
    ci_low: float
    ci_high: float
    #: over the successful runs only (None if none succeeded)
    median_steps_to_target: float | None
    median_seconds_to_target: float | None
    #: over all runs: what the remedy costs whether or not it works
    mean_steps: float
    mean_seconds: float
    diverged: int
    mean_acceptance_rate: float | None


SUMMARY_FIELDS = [f.name for f in dataclasses.fields(CellSummary)]


def summarize(records: Sequence[RunRecord]) -> list[CellSummary]:
    """One :class:`CellSummary` per cell, in the order the cells first appear."""
    groups: dict[tuple[str, str, str], list[RunRecord]] = {}
    for r in records:
        if not r.trace:
            groups.setdefault((r.problem, r.method, r.remedy), []).append(r)
    out = []
    for (problem, method, remedy), runs in groups.items():
        wins = [r for r in runs if r.success]
        low, high = wilson_interval(len(wins), len(runs))
        rates = [r.acceptance_rate for r in runs if r.acceptance_rate is not None]
        out.append(
            CellSummary(
                problem=problem,
                method=method,
                remedy=remedy,
                seeds=len(runs),
                successes=len(wins),
                success_rate=len(wins) / len(runs),
                ci_low=low,
                ci_high=high,
                median_steps_to_target=(
                    statistics.median(r.steps_to_target for r in wins) if wins else None
                ),
                median_seconds_to_target=(
                    statistics.median(r.seconds_to_target for r in wins) if wins else None
                ),
                mean_steps=statistics.fmean(r.steps for r in runs),
                mean_seconds=statistics.fmean(r.seconds for r in runs),
                diverged=sum(r.diverged for r in runs),
                mean_acceptance_rate=statistics.fmean(rates) if rates else None,
            )
        )
    return out


# --- writing the results -------------------------------------------------------------------------


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def _write_csv(path: Path, fields: list[str], rows: Sequence[Any]) -> None:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(fields)
    for row in rows:
        writer.writerow([_csv_value(getattr(row, name)) for name in fields])
    write_text(path, text.getvalue())


def _steps_text(value: float | None) -> str:
    # (a median of an even count can be a half step: shown, not rounded to even)
    return "-" if value is None else f"{value:g}"


def _seconds_text(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def _cell_text(c: CellSummary | None) -> str:
    if c is None:
        return ""
    text = f"**{c.success_rate:.0%}** ({c.successes}/{c.seeds})"
    if c.successes:
        text += (
            f"<br>{_steps_text(c.median_steps_to_target)} steps, "
            f"{_seconds_text(c.median_seconds_to_target)}"
        )
    return text


def markdown_report(
    summaries: Sequence[CellSummary],
    seeds: int,
    quick: bool,
    wall_seconds: float,
    processes: int,
    figures: Sequence[str],
) -> str:
    """The Markdown report: the success table, the settings, and how to read them."""
    by_cell = {(c.problem, c.method, c.remedy): c for c in summaries}
    problems = list(dict.fromkeys(c.problem for c in summaries))
    methods = list(dict.fromkeys(c.method for c in summaries))
    remedies = [r for r in REMEDIES if any(c.remedy == r for c in summaries)]
    lines = [
        "# Escaping saddle points and poor minima",
        "",
        f"Each cell: the share of {seeds} seeds that succeeded (a saddle escaped, or the global "
        "minimum reached within the tolerance), then the median steps and seconds to success "
        "over the seeds that succeeded. Every remedy gets the same budget of optimizer steps per "
        "seed (the settings table); restarts split it between their runs. "
        + ("**Quick run: few seeds, read the rates as rough.** " if quick else "")
        + f"Wall time {wall_seconds:.0f} s in {processes} process(es).",
        "",
        "| problem | success when | method | "
        + " | ".join(REMEDY_LABELS[r] for r in remedies)
        + " |",
        "|---|---|---|" + "---|" * len(remedies),
    ]
    for p in problems:
        problem = PROBLEMS[p]
        for i, m in enumerate(methods):
            if not any((p, m, r) in by_cell for r in remedies):
                continue
            head = f"{p} | {problem.success_text()}" if i == 0 else " | "
            row = [_cell_text(by_cell.get((p, m, r))) for r in remedies]
            lines.append(f"| {head} | {METHODS[m].label} | " + " | ".join(row) + " |")
    lines += [
        "",
        "95% Wilson intervals, mean cost per run (successful or not), divergences and "
        "acceptance rates are in `escape_results.csv`; every run is in `escape_runs.csv`.",
        "",
        "## The problems and their settings",
        "",
        "| problem | what | budget | lr (GD, SGD, momentum) | Adam lr | noise eta | restarts "
        "| temperature | jump std |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in problems:
        s, problem = SETTINGS[p], PROBLEMS[p]
        lines.append(
            f"| {p} | {problem.description} | {s.steps} | {s.lr:g} | {s.adam_lr:g} | {s.eta:g} "
            f"| {s.restarts} x {s.steps // s.restarts} | {s.temperature:g} -> "
            f"{s.temperature / 100:g} | {s.perturbation_std:g} |"
        )
    lines += [
        "",
        "Mini-batch SGD draws batches of 8 of the problem's 64 samples "
        "(`optimlab.data.MiniBatches`); for the formulas the samples add zero-mean linear terms "
        "`a_i . x` to the loss, so the full batch is the exact function. Noise: "
        "`GradientNoise(eta, gamma=0.55)`. Annealing: `Annealing` around the optimizer, "
        "temperature decaying exponentially to 1/100 of its start over the budget. Restarts: "
        "`random_restarts` of `descend` from uniform random starts in the problem's box. "
        "The saddles start on their trap; the other problems start at a random point of their "
        "box drawn from the seed.",
        "",
    ]
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{Path(f).stem}]({f})" for f in figures]
        lines.append("")
    return "\n".join(lines)


# --- the entry point -----------------------------------------------------------------------------


@dataclasses.dataclass
class StudyReport:
    """What :func:`escape_main` wrote and measured."""

    out_dir: Path
    records: list[RunRecord]
    summaries: list[CellSummary]
    files: list[Path]
    seconds: float
    markdown: str


def _choose(owner: str, arg: str, value: Sequence[str] | None, valid: Sequence[str]) -> list[str]:
    if value is None:
        return list(valid)
    if isinstance(value, str):
        value = [value]
    chosen = list(value)
    unknown = [v for v in chosen if v not in valid]
    if unknown or not chosen:
        raise ValueError(
            f"{owner}: {arg} must be a non-empty list of {', '.join(valid)}; got {value!r}"
        )
    return chosen


QUICK_SEEDS = 2


def escape_main(
    out_dir: str | os.PathLike[str],
    seeds: int = 20,
    quick: bool = False,
    processes: int | None = None,
    problems: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    remedies: Sequence[str] | None = None,
    figures: bool = True,
    log: Callable[[str], None] | None = None,
) -> StudyReport:
    """Run the escape study and write its tables and figures into ``out_dir``.

    ``seeds`` runs per cell (seeds 0 .. seeds-1); ``quick=True`` uses at most
    :data:`QUICK_SEEDS` seeds for a first look (its rates are rough). ``processes``
    defaults to the number of CPUs; the results do not depend on it. ``problems``, ``methods``
    and ``remedies`` narrow the grid (names of :data:`PROBLEMS`, :data:`METHODS`,
    :data:`REMEDIES`). ``figures=False`` skips the figures (and matplotlib). ``log`` receives
    progress lines (``print`` on the command line).

    Writes ``escape_results.csv``, ``escape_runs.csv``, ``escape_results.md`` and, with figures,
    ``figures/escape_success.png``, ``figures/escape_steps.png``, ``figures/escape_paths.png`` and
    ``figures/escape_annealing.png``; returns a :class:`StudyReport`.
    """
    owner = "escape_main"
    seeds = checks.integer(owner, "seeds", seeds, 1)
    if quick:
        seeds = min(seeds, QUICK_SEEDS)
    if processes is None:
        processes = os.cpu_count() or 1
    processes = checks.integer(owner, "processes", processes, 1)
    problem_names = _choose(owner, "problems", problems, list(PROBLEMS))
    method_names = _choose(owner, "methods", methods, list(METHODS))
    remedy_names = _choose(owner, "remedies", remedies, REMEDIES)
    if figures:
        from . import (
            figures as figures_module,
        )  # fails early, before the runs, if matplotlib is missing
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    everything = run_study(
        problem_names, method_names, remedy_names, seeds, processes, log, traces=figures
    )
    records = [r for r in everything if not r.trace]
    summaries = summarize(records)
    seconds = time.perf_counter() - started
    if log:
        log(f"escape study: {len(records)} runs done in {seconds:.1f} s")

    files = [out / "escape_results.csv", out / "escape_runs.csv"]
    _write_csv(files[0], SUMMARY_FIELDS, summaries)
    _write_csv(files[1], CSV_FIELDS, records)
    figure_files: list[Path] = []
    if figures:
        figure_dir = out / "figures"  # where every lab of optimlab puts its figures
        figure_dir.mkdir(exist_ok=True)
        figure_files = figures_module.draw_all(
            figure_dir, summaries, figure_data(everything, problem_names), METHODS, REMEDY_LABELS
        )
    markdown = markdown_report(
        summaries,
        seeds,
        quick,
        seconds,
        processes,
        [f.relative_to(out).as_posix() for f in figure_files],
    )
    md_path = out / "escape_results.md"
    write_text(md_path, markdown)
    files += [md_path, *figure_files]
    if log:
        log(f"escape study: wrote {', '.join(str(f) for f in files)}")
    return StudyReport(out, records, summaries, files, seconds, markdown)


def figure_data(records: Sequence[RunRecord], problems: Sequence[str]) -> dict[str, Any]:
    """Everything the figures draw, computed here so the plotting code only draws.

    ``paths[problem][remedy]``: the gradient-descent paths of seed 0 on the 2-d problems, with a
    grid of the objective for the contours; ``acceptance[problem]``: the windowed acceptance
    rate and the temperature over the steps of the trace runs (see :func:`run_study`).
    """
    paths: dict[str, dict[str, Any]] = {}
    acceptance: dict[str, dict[str, list[float]]] = {}
    for r in records:
        if r.paths is not None:
            paths.setdefault(r.problem, {})[r.remedy] = r.paths
        if r.trace and r.accepted is not None:
            window = 20
            flags = [float(a) for a in r.accepted]
            rate = [
                statistics.fmean(flags[max(0, i - window + 1) : i + 1]) for i in range(len(flags))
            ]
            schedule = schedules.as_schedule(
                "figure_data", "temperature", SETTINGS[r.problem].temperature_schedule()
            )
            acceptance[r.problem] = {
                "step": list(range(len(flags))),
                "rate": rate,
                "temperature": [schedule(t) for t in range(len(flags))],
            }
    grids = {}
    for name in paths:
        problem = PROBLEMS[name]
        low = torch.as_tensor(problem.low, dtype=torch.float64).expand(2)
        high = torch.as_tensor(problem.high, dtype=torch.float64).expand(2)
        for runs in paths[name].values():  # widen the view to every point visited
            for path in runs:
                points = torch.tensor(path, dtype=torch.float64)
                low = torch.minimum(low, points.min(0).values)
                high = torch.maximum(high, points.max(0).values)
        xs = torch.linspace(float(low[0]), float(high[0]), 200, dtype=torch.float64)
        ys = torch.linspace(float(low[1]), float(high[1]), 200, dtype=torch.float64)
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)
        with torch.no_grad():
            values = problem.objective(grid)
        grids[name] = {"x": xs.tolist(), "y": ys.tolist(), "f": values.tolist()}
    return {"paths": paths, "grids": grids, "acceptance": acceptance, "problems": list(problems)}
