"""``optimlab compare``: every optimizer of the notes, tuned fairly, on test functions and data.

The experiment, in order:

1. **Problems.** 2-D test functions (full gradient, each seed's start point jittered by 1% of
   the plot) and data sets (an MLP trained with mini-batches on a 60/20/20 train / validation /
   test split; each seed sets the initial weights and the batch order).
2. **Tuning.** Each contender's learning rate is swept over a log grid with the first seed and
   the same budget as the final runs, and refined halfway around the winner
   (:func:`optimlab.lab.runner.tune`). The sweep minimizes the *validation* loss (the function
   value on test functions); the test split is never looked at.
3. **Final runs.** Every contender runs every seed at its tuned learning rate.
4. **Numbers.** Per run: final and best loss and accuracy, test loss and accuracy, the steps
   and training seconds until the target (validation accuracy, or a gap ``f - f* <= 1e-3``) was
   first reached. Per contender: the mean and spread over seeds of each.
5. **Verdicts.** Per problem, the contenders are ordered by the score (test accuracy, or the
   final gap, at the end of the stated budget); the verdict names a winner only where its
   advantage holds beyond the noise of the seeds, else the group that ties; a contender with
   a run that diverged or ended far worse than its own best is unstable and cannot win; two
   forms of one algorithm are said to be one (:mod:`optimlab.lab.verdicts`).

:func:`run_compare` does 1-5 and returns a :class:`CompareResult`; :func:`write_compare` writes
the run folder: ``metrics.csv`` (one row per run), ``summary.csv`` (one row per contender and
problem), ``sweep.csv``, ``curves.csv``, ``metrics.json`` (all of it), ``figures/``,
``report.html`` and ``summary.md``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import plots, verdicts
from .contenders import CONTENDERS, NOTES_CONTENDERS, Contender
from .formatting import kind_of, stat, value
from .landscape import Grid, contour_panel, grid
from .problems import (
    DEFAULT_DATASETS,
    DEFAULT_FUNCTIONS,
    Column,
    DatasetProblem,
    FunctionProblem,
    make_problem,
)
from .report import Document, Figure, Section, Table
from .rundir import RunFolder
from .runner import DEFAULT_LR_GRID, Budget, Runner, RunResult, RunSpec, Tuning, outcome, tune
from .summary import aggregate, curves

__all__ = ["CompareOptions", "CompareResult", "Verdict", "run_compare", "write_compare"]


@dataclass(frozen=True)
class CompareOptions:
    """Everything ``optimlab compare`` can be asked; the defaults are the ``make run`` run."""

    contenders: tuple[Contender, ...] = tuple(CONTENDERS[n] for n in NOTES_CONTENDERS)
    functions: tuple[str, ...] = DEFAULT_FUNCTIONS
    datasets: tuple[str, ...] = DEFAULT_DATASETS
    seed: int = 0
    seeds: int = 3
    steps: int = 200
    epochs: int = 10
    batch_size: int | None = 32
    hidden: int = 32
    depth: int = 6
    lr_grid: tuple[float, ...] = DEFAULT_LR_GRID
    refine: bool = True
    target_accuracy: float | None = None
    target_gap: float = 1e-3
    jitter: float = 0.01
    evaluations_per_epoch: int = 4
    device: str = "cpu"
    jobs: int = 1
    #: the user's own models and data (:class:`optimlab.lab.user.UserProblem`)
    user_problems: tuple[Any, ...] = ()

    @property
    def seed_list(self) -> list[int]:
        return [self.seed + i for i in range(self.seeds)]


@dataclass
class Verdict:
    """What the seeds support on one problem (:mod:`optimlab.lab.verdicts`), as numbers and as
    a sentence: the order by mean score (unstable contenders last), the clear winner if there
    is one, the group tying with the best, the unstable contenders."""

    problem: str
    ranking: list[str]
    score: Column
    sentence: str
    winner: str | None = None
    tied: list[str] = field(default_factory=list)
    unstable: list[str] = field(default_factory=list)
    #: the tie is one algorithm in several forms (momentum averaged and heavy ball), and the
    #: best of them clearly beats every other: the algorithm won
    one_algorithm: bool = False

    @property
    def winners(self) -> list[str]:
        """The clear winner, or the forms of the algorithm that won, or none."""
        if self.winner is not None:
            return [self.winner]
        return list(self.tied) if self.one_algorithm else []


@dataclass
class CompareResult:
    options: CompareOptions
    problems: list[FunctionProblem | DatasetProblem]
    tunings: dict[tuple[str, str], Tuning]
    runs: dict[tuple[str, str], list[RunResult]]
    summaries: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    curves: dict[tuple[str, str], dict[str, list[float]]] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    grids: dict[str, Grid] = field(default_factory=dict)


def make_problems(options: CompareOptions) -> list[FunctionProblem | DatasetProblem]:
    functions = [
        make_problem(name, jitter=options.jitter, target_gap=options.target_gap)
        for name in options.functions
    ]
    datasets = [
        make_problem(
            name,
            split_seed=options.seed,
            batch_size=options.batch_size,
            hidden=options.hidden,
            depth=options.depth,
            target_accuracy=options.target_accuracy,
        )
        for name in options.datasets
    ]
    return functions + datasets + list(options.user_problems)


def eval_every(problem: FunctionProblem | DatasetProblem, per_epoch: int = 4) -> int:
    """Every step on a test function (its path is drawn); a few times per epoch on data."""
    if isinstance(problem, FunctionProblem):
        return 1
    return max(1, problem.steps_per_epoch() // per_epoch)


def run_compare(
    options: CompareOptions,
    progress: Callable[[str, int], Callable[[], None]] | None = None,
    runner: Runner | None = None,
) -> CompareResult:
    """Tune, run every seed, and summarize (steps 1-5 of the module docstring); in
    ``runner``'s worker processes if given, reporting to its progress (else in a
    :class:`Runner` of ``options.jobs`` reporting to ``progress``)."""
    if runner is None:
        with Runner(options.jobs, progress) as runner:
            return run_compare(options, runner=runner)
    problems = make_problems(options)
    contenders = list(options.contenders)
    pairs = [(p, c) for p in problems for c in contenders]
    budget = Budget(steps=options.steps, epochs=options.epochs)
    seeds = options.seed_list

    def every(problem):
        return eval_every(problem, options.evaluations_per_epoch)

    tuned = tune(
        runner,
        pairs,
        grid=options.lr_grid,
        seeds=seeds[:1],
        budget=budget,
        eval_every=every,
        refine=options.refine,
        device=options.device,
    )
    tunings = {(p.name, c.name): tuning for (p, c), tuning in tuned.items()}
    specs = {
        (p.name, c.name): [
            RunSpec(
                p, c, tunings[(p.name, c.name)].lr, s, p.steps(budget), every(p), options.device
            )
            for s in seeds
        ]
        for p, c in pairs
    }
    flat = [s for group in specs.values() for s in group]
    results = dict(zip(flat, runner.run(flat, "final runs, every seed")))
    runs = {key: [results[s] for s in group] for key, group in specs.items()}
    result = CompareResult(options, problems, tunings, runs)
    for problem in problems:
        if isinstance(problem, FunctionProblem):
            metrics = ["loss", "gap"]
        else:
            metrics = getattr(problem, "curve_names", ["train_loss", "val_loss", "val_accuracy"])
        for contender in contenders:
            key = (problem.name, contender.name)
            result.summaries[key] = aggregate(runs[key])
            result.curves[key] = curves(runs[key], metrics)
        result.verdicts.append(verdict(problem, contenders, result.summaries, runs, tunings))
        if isinstance(problem, FunctionProblem):
            result.grids[problem.name] = grid(problem.function)
    return result


# --- verdicts --------------------------------------------------------------------------------


def _judged(problem, contenders: list[Contender], runs, tunings) -> verdicts.Finding:
    """What the seeds support on ``problem`` (see :mod:`optimlab.lab.verdicts`)."""
    score = problem.score
    log_scale = kind_of(score.key, score.percent) == "sci"
    metric = problem.curve_metric  # its final value against its best along the way
    higher = problem.best_metrics.get(metric, score.higher_is_better)
    # an accuracy drop counts against the noise of the validation set's size (verdicts.unstable)
    split = getattr(problem, "split", None)
    samples = len(split().y_val) if higher and callable(split) else None
    scores, shaky = {}, {}
    for c in contenders:
        rows = [outcome(r) for r in runs[(problem.name, c.name)]]
        scores[c.name] = [
            verdicts.oriented(row[score.key], score.higher_is_better, log_scale) for row in rows
        ]
        shaky[c.name] = any(
            verdicts.unstable(
                row.get(metric, math.nan),
                row.get(f"best_{metric}", math.nan),
                higher,
                bool(row["diverged"]),
                samples,
            )
            for row in rows
        )
    seeds = min(len(v) for v in scores.values()) if scores else 0
    names = [c.name for c in contenders]
    twins = {frozenset(pair) for pair in _same_pairs(problem, contenders, names, tunings)}
    return verdicts.judge(scores, shaky, seeds, twins)


def _names(titles: list[str]) -> str:
    return titles[0] if len(titles) == 1 else ", ".join(titles[:-1]) + " and " + titles[-1]


def verdict(problem, contenders: list[Contender], summaries, runs, tunings) -> Verdict:
    """What the seeds support on ``problem``: a winner only beyond their noise, else the
    group that ties; unstable contenders named; one algorithm in two forms said to be one."""
    rows = {c.name: summaries[(problem.name, c.name)] for c in contenders}
    titles = {c.name: c.title for c in contenders}
    finding = _judged(problem, contenders, runs, tunings)
    score = problem.score
    kind = kind_of(score.key, score.percent)

    def scored(name: str) -> str:
        row = rows[name]
        return stat(row[f"{score.key}_mean"], row[f"{score.key}_std"], kind)

    stable = [n for n in finding.order if n not in finding.unstable]
    behind = [n for n in stable if n not in finding.tied]
    one_algorithm = _one_algorithm(problem, contenders, finding, behind, tunings)
    if len(contenders) == 1:
        only = contenders[0].name
        return Verdict(
            problem.name,
            finding.order,
            score,
            f"On {problem.title}, {titles[only]} (the only contender): {score.label} "
            f"{scored(only)}{_to_target(problem, rows, titles, only, stable)}.",
            None,
            finding.tied,
            finding.unstable,
        )
    if finding.winner is not None:
        winner = finding.winner
        text = f"On {problem.title}, {titles[winner]} won: {score.label} {scored(winner)}"
        if len(stable) > 1:
            second = stable[1]
            text += (
                f" against {scored(second)} for {titles[second]}, the runner-up: better on each "
                f"of the {finding.seeds} seeds and beyond the paired 95% interval"
            )
    elif not stable:
        winner = None
        text = f"On {problem.title}, no contender finished stably"
    else:
        winner = None
        text = _tie(problem, finding, titles, scored, runs, one_algorithm)
    text += _same_algorithms(problem, contenders, finding.tied or stable[:2], titles, tunings)
    if winner is None and finding.tied and behind and finding.seeds >= verdicts.MIN_SEEDS:
        # every stable contender outside the tie is clearly worse than the best (judge)
        text += (
            "; the others are clearly behind the best on each seed, the nearest "
            f"{titles[behind[0]]} ({scored(behind[0])})"
        )
        if "sgd" in behind and behind[0] != "sgd":
            text += f", plain SGD {scored('sgd')}"
    if finding.unstable:
        names = _names([titles[n] for n in finding.unstable])
        text += (
            f". Unstable (diverged, or ended far worse than its own best), so not ranked: {names}"
        )
    best = winner or (stable[0] if stable else None)
    if best is not None:
        text += _to_target(problem, rows, titles, best, stable)
    text += _sensitivity(problem, contenders, titles, tunings)
    if "sgd" in rows and best not in (None, "sgd") and winner is not None:
        text += f". Plain SGD: {value(rows['sgd'][f'{score.key}_mean'], kind)}"
    return Verdict(
        problem.name,
        finding.order,
        score,
        text + ".",
        winner,
        finding.tied,
        finding.unstable,
        one_algorithm,
    )


def _one_algorithm(problem, contenders, finding, behind: list[str], tunings) -> bool:
    """Whether the tie is one algorithm in several forms that clearly beats every other
    contender, the unstable ones too, on enough seeds: the README's rule for a win, taken by
    the algorithm (its forms differ by rounding alone, see :func:`verdicts.judge`)."""
    tied = finding.tied
    return (
        len(tied) > 1
        and bool(behind)
        and not finding.unbeaten
        and finding.seeds >= verdicts.MIN_SEEDS
        and len(_same_pairs(problem, contenders, tied, tunings)) == len(tied) * (len(tied) - 1) // 2
    )


def _tie(problem, finding, titles, scored, runs, one_algorithm: bool) -> str:
    """The sentence of a verdict without a single winner: the group tying with the best, why
    they tie (noise, or scores below the resolution), or their win as one algorithm."""
    tied = finding.tied
    listed = ", ".join(f"{titles[n]} {scored(n)}" for n in tied)
    names = _names([titles[n] for n in tied])
    score = problem.score
    if one_algorithm:
        return f"On {problem.title}, {names} won as one algorithm ({score.label}: {listed})"
    floored = (
        _below_resolution(problem, tied, runs) if kind_of(score.key, score.percent) == "sci" else []
    )
    if len(tied) > 1 and floored:
        # not noise: below the resolution the scores are compared at, they are equal
        rest = [n for n in tied if n not in floored]
        text = (
            f"On {problem.title}, no clear winner: {names} tie ({score.label}: {listed}): "
            f"{_names([titles[n] for n in floored])} end{'s' if len(floored) == 1 else ''} "
            f"below {verdicts.RESOLUTION:g} on every seed, where the scores count as equal (the "
            "rounding of float64 arithmetic near a minimum)"
        )
        if rest:
            text += (
                f", and {_names([titles[n] for n in rest])} "
                f"{'is' if len(rest) == 1 else 'are'} within the noise of {finding.seeds} "
                "seeds of them"
            )
    elif len(tied) > 1:
        text = (
            f"On {problem.title}, no clear winner: {names} tie within the noise of "
            f"{_seeds(finding.seeds)} ({score.label}: {listed})"
        )
    else:
        alone = len(finding.order) - len(finding.unstable) == 1
        lead = "is the only stable contender" if alone else "scored best of the stable ones"
        text = f"On {problem.title}, no clear winner: {names} {lead} ({listed}), but "
        if finding.seeds < verdicts.MIN_SEEDS:
            text += f"{_seeds(finding.seeds)} support{'s' * (finding.seeds == 1)} no claim"
        else:  # verdicts.judge: it is not clearly better than one that scored well, unstable
            unbeaten = _names([titles[n] for n in finding.unbeaten])
            text += f"it is not clearly better on each seed than {unbeaten}, unstable"
    if finding.seeds < verdicts.MIN_SEEDS:
        text += f"; a claim needs at least {verdicts.MIN_SEEDS} seeds"
    return text


def _seeds(count: int) -> str:
    return f"{count} seed" if count == 1 else f"{count} seeds"


def _below_resolution(problem, names: list[str], runs) -> list[str]:
    """Those of ``names`` whose every run scored at or below :data:`verdicts.RESOLUTION`."""
    key = problem.score.key
    return [
        n
        for n in names
        if all(outcome(r)[key] <= verdicts.RESOLUTION for r in runs[(problem.name, n)])
    ]


def _same_pairs(problem, contenders, names, tunings) -> list[tuple[str, str]]:
    """The pairs of ``names`` that are one algorithm at the rates tuned on ``problem``."""
    by_name = {c.name: c for c in contenders}

    def tuned(name: str) -> tuple[str, dict, float]:
        c = by_name[name]
        return (c.optimizer, dict(c.arguments), tunings[(problem.name, name)].lr)

    return [
        (a, b)
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        if verdicts.same_algorithm(tuned(a), tuned(b))
    ]


def _same_algorithms(problem, contenders, names, titles, tunings) -> str:
    """The sentence naming pairs of ``names`` that are one algorithm, or ""."""
    return "".join(
        f"; {titles[a]} and {titles[b]} are one algorithm at the rates tuned (momentum averaged "
        "at lr a is the heavy ball at lr a * (1 - beta))"
        for a, b in _same_pairs(problem, contenders, names, tunings)
    )


def _to_target(problem, rows, titles, best: str, stable: list[str]) -> str:
    target = problem.target
    if target is None:
        return ""
    row = rows[best]
    steps = row["steps_to_target_mean"]
    if math.isnan(steps):
        return f". {titles[best]} did not reach {target.label} in any run"
    text = (
        f". {titles[best]} reached {target.label} after {value(steps, 'steps')} steps "
        f"({row['reached']}/{row['runs']} runs)"
    )
    reached = [n for n in stable if rows[n]["reached"] == rows[n]["runs"]]
    if reached:
        fewest = min(reached, key=lambda n: rows[n]["steps_to_target_mean"])
        if fewest != best:
            text += (
                f"; fewest steps to it: {titles[fewest]} "
                f"({value(rows[fewest]['steps_to_target_mean'], 'steps')})"
            )
    return text


# --- the run folder --------------------------------------------------------------------------


def _contender_rows(result: CompareResult, problem) -> list[tuple[Contender, dict]]:
    return [(c, result.summaries[(problem.name, c.name)]) for c in result.options.contenders]


def _summary_table(result: CompareResult, problem) -> Table:
    columns = list(problem.columns)
    headers = ["optimizer", "lr", "good lr range", *[c.label for c in columns]]
    headers += ["train seconds", "diverged"]
    rows, emphasis = [], set()
    entries = _contender_rows(result, problem)
    for j, column in enumerate(columns, start=3):
        means = [row[f"{column.key}_mean"] for _, row in entries]
        finite = [m for m in means if not math.isnan(m)]
        if finite:
            best = max(finite) if column.higher_is_better else min(finite)
            emphasis |= {(i, j) for i, m in enumerate(means) if m == best}
    for contender, row in entries:
        tuning = result.tunings[(problem.name, contender.name)]
        cells = [contender.title, value(tuning.lr, "lr") + (" (fixed)" if tuning.fixed else "")]
        cells.append(_rate_range(problem, tuning))
        for column in columns:
            kind = kind_of(column.key, column.percent)
            cell = stat(row[f"{column.key}_mean"], row[f"{column.key}_std"], kind)
            if column.key.endswith("_to_target") and row["reached"] < row["runs"]:
                cell += f" ({row['reached']}/{row['runs']} runs)"
            cells.append(cell)
        cells.append(stat(row["train_seconds_mean"], row["train_seconds_std"], "seconds"))
        cells.append(f"{row['diverged']}/{row['runs']}")
        rows.append(cells)
    return Table(
        f"summary-{problem.name}",
        f"{problem.title}: mean ± standard deviation over {result.options.seeds} seeds",
        headers,
        rows,
        emphasis,
        note="Bold: the best mean in the column. Good lr range: of the swept rates, "
        f"{_margin(problem)} (the sensitivity to the learning rate). "
        "Steps and seconds to the target average the runs that reached it; seconds to it are "
        "its steps times the run's median step (the steady-state cost of training, not "
        "evaluation: a pause of the machine is not charged), train seconds the measured total.",
    )


def _minimum(problem) -> float | None:
    """f* for a test function with a known minimum (sweep margins on the gap), else None."""
    function = getattr(problem, "function", None)
    return None if function is None else function.minimum_value


def _margin(problem) -> str:
    """What makes a swept rate good, as a relative clause."""
    if _minimum(problem) is not None:
        return f"those whose gap f - f* is within a factor {verdicts.GAP_MARGIN:g} of the best"
    return f"those whose validation loss is within {verdicts.LOSS_MARGIN:.0%} of the best"


def _rate_range(problem, tuning) -> str:
    """The good learning rates of a sweep, as a range and its width in decades."""
    if tuning.fixed or not tuning.scores:
        return "-"
    rates = verdicts.good_rates(tuning.scores, _minimum(problem))
    if not rates:
        return "none"
    if len(rates) == 1:
        return f"{value(rates[0], 'lr')} only"
    return (
        f"{value(rates[0], 'lr')} to {value(rates[-1], 'lr')} "
        f"({verdicts.decades(rates):.1f} decades)"
    )


def _sensitivity(problem, contenders, titles, tunings) -> str:
    """The sentence on the contenders' tolerance of the learning rate, or ""."""
    widths = {}
    for c in contenders:
        tuning = tunings[(problem.name, c.name)]
        if not tuning.fixed and tuning.scores:
            rates = verdicts.good_rates(tuning.scores, _minimum(problem))
            widths[c.name] = verdicts.decades(rates) if rates else math.nan
    known = {n: w for n, w in widths.items() if not math.isnan(w)}
    if len(known) < 2:
        return ""
    widest = max(known.values())
    narrowest = min(known.values())

    def span(width: float) -> str:
        return "one rate of the grid" if width == 0 else f"{width:.1f} decades"

    if widest - narrowest < 0.5:
        return f". Good learning rates ({_margin(problem)}) span about {span(widest)} for all"
    wide = _names([titles[n] for n, w in known.items() if w == widest])
    narrow = _names([titles[n] for n, w in known.items() if w == narrowest])
    return (
        f". Good learning rates ({_margin(problem)}): {wide} the widest range "
        f"({span(widest)}), {narrow} the narrowest ({span(narrowest)})"
    )


def _ranking_table(result: CompareResult) -> Table:
    """Each optimizer's standing on each problem: "won" (a clear winner), "tie" (in the group
    tying with the best), its place by mean score otherwise, or "unstable"."""
    contenders = result.options.contenders
    headers = ["problem", *[c.title for c in contenders]]
    rows, emphasis = [], set()
    for i, v in enumerate(result.verdicts):
        places = {name: place for place, name in enumerate(v.ranking, start=1)}
        cells = []
        for j, c in enumerate(contenders, start=1):
            if c.name in v.unstable:
                cells.append("unstable")
            elif c.name == v.winner:
                cells.append("won")
                emphasis.add((i, j))
            elif c.name in v.winners:
                cells.append("won (one algorithm)")
                emphasis.add((i, j))
            elif c.name in v.tied and len(v.tied) > 1:
                cells.append(f"tie ({places[c.name]})")
            else:
                cells.append(str(places[c.name]))
        rows.append([v.problem, *cells])
    wins = [sum(c.name in v.winners for v in result.verdicts) for c in contenders]
    rows.append(["clear wins", *[str(w) for w in wins]])
    return Table(
        "ranking",
        "Standing of each optimizer on each problem",
        headers,
        rows,
        emphasis,
        note="won: better than every other on each seed, beyond the paired 95% interval; won "
        "(one algorithm): forms of one algorithm that tie, the best of them better than every "
        "other so; "
        "tie (k): within the noise of the best (k: its place by mean score); a number: its "
        "place by mean score, clearly behind the best; unstable: a run diverged or ended far "
        "worse than its own best.",
    )


def _sweep_table(result: CompareResult) -> Table:
    lrs = sorted({lr for t in result.tunings.values() for lr in t.scores})
    headers = ["problem", "optimizer", *[value(lr, "lr") for lr in lrs]]
    rows, emphasis = [], set()
    for i, ((problem, contender), tuning) in enumerate(result.tunings.items()):
        cells = [problem, contender]
        for j, lr in enumerate(lrs, start=2):
            cells.append(value(tuning.scores[lr], "float") if lr in tuning.scores else "")
            if lr == tuning.lr:
                emphasis.add((i, j))
        rows.append(cells)
    return Table(
        "sweep",
        "Learning-rate sweep: final validation loss (f on test functions) with the first seed",
        headers,
        rows,
        emphasis,
        note="Bold: the learning rate chosen. Empty: not tried (refinement only tries the "
        "halfway points around each winner).",
    )


@dataclass
class Sketchbook:
    """The figures of a report, listed first and drawn together (:func:`_figures`)."""

    folder: RunFolder
    #: (panels, stem, layout) for :func:`optimlab.lab.plots.draw_job`
    jobs: list[tuple[list, Path, dict]] = field(default_factory=list)


def _draw(
    result: CompareResult,
    book: Sketchbook,
    stem: str,
    panels: list,
    names: list[str],
    caption: str,
    **layout,
) -> Figure:
    """List ``panels`` for ``figures/stem`` (colors fixed by ``names``), every contender under
    its display name, as the tables name it; the report's Figure."""
    titles = {c.name: c.title for c in result.options.contenders}
    order = [titles.get(n, n) for n in names]
    book.jobs.append(
        (
            [_relabel(panel, titles) for panel in panels],
            book.folder.file(f"figures/{stem}"),
            {"order": order, **layout},
        )
    )
    return Figure(f"figures/{stem}.png", caption)


def _relabel(panel, titles: dict[str, str]):
    """``panel`` with contender keys replaced by display names in its labels."""

    def line(x: plots.Line) -> plots.Line:
        return dataclasses.replace(x, label=titles.get(x.label, x.label))

    if isinstance(panel, plots.ContourPanel):
        return dataclasses.replace(panel, paths=[line(x) for x in panel.paths])
    bars = panel.bars
    if bars is not None:
        bars = dataclasses.replace(bars, labels=[titles.get(b, b) for b in bars.labels])
    return dataclasses.replace(
        panel,
        lines=[line(x) for x in panel.lines],
        bars=bars,
        marks=[(titles.get(n, n), x, y) for n, x, y in panel.marks],
        diverged=[(titles.get(n, n), x) for n, x in panel.diverged],
    )


def _band(table: dict[str, list[float]], label: str, x: str, metric: str) -> plots.Line:
    """The mean of ``metric`` against column ``x``, shaded over its range across seeds."""
    return plots.Line(
        label, table[x], table[metric], table[f"{metric}_min"], table[f"{metric}_max"]
    )


def _landscapes_figure(result: CompareResult, book: Sketchbook, functions, names) -> Figure:
    panels = [
        contour_panel(
            p.function,
            result.grids[p.name],
            {c: result.runs[(p.name, c)][0] for c in names},
            start=p.start_point(result.options.seed),
            legend=i == 0,
        )
        for i, p in enumerate(functions)
    ]
    return _draw(
        result,
        book,
        "landscapes",
        panels,
        names,
        "Paths of the first seed over each test function, at each optimizer's tuned learning rate.",
        size=(5.6, 4.6),
    )


def _function_curves_figure(result: CompareResult, book: Sketchbook, functions, names) -> Figure:
    panels = []
    for p in functions:
        metric = p.curve_metric
        panels.append(
            plots.Panel(
                p.title,
                "step",
                "f - f*" if metric == "gap" else "f",
                [_band(result.curves[(p.name, c)], c, "step", metric) for c in names],
                yscale="log" if metric == "gap" else "linear",
                hlines=[(p.target_gap, "target")] if p.target else [],
            )
        )
    return _draw(
        result,
        book,
        "function_curves",
        panels,
        names,
        "Gap to the minimum against steps: mean over seeds, band = range over seeds.",
    )


def _dataset_curves_figure(result: CompareResult, book: Sketchbook, p, names) -> Figure:
    """Training loss, validation accuracy (against steps and seconds) and validation loss."""

    def lines(x: str, metric: str) -> list[plots.Line]:
        return [_band(result.curves[(p.name, c)], c, x, metric) for c in names]

    if "val_accuracy" not in result.curves[(p.name, names[0])]:  # regression
        panels = [
            plots.Panel(f"{p.title}: training loss", "step", "mean squared error (training)",
                        lines("step", "train_loss"), yscale="log"),
            plots.Panel(f"{p.title}: validation loss", "step", "mean squared error (validation)",
                        lines("step", "val_loss"), yscale="log", legend=False),
            plots.Panel(f"{p.title}: validation loss against time", "training seconds",
                        "mean squared error (validation)", lines("seconds", "val_loss"),
                        yscale="log", legend=False),
        ]  # fmt: skip
        caption = f"{p.title}: curves, mean over seeds, band = range over seeds."
        return _draw(result, book, f"{p.name}_curves", panels, names, caption)
    target = [(p.target.threshold, "target")] if p.target is not None else []
    zoom = _accuracy_limits(result, p, names)
    panels = [
        plots.Panel(
            f"{p.title}: training loss",
            "step",
            "cross-entropy (training set)",
            lines("step", "train_loss"),
            yscale="log",
        ),
        plots.Panel(
            f"{p.title}: validation accuracy",
            "step",
            "accuracy",
            lines("step", "val_accuracy"),
            hlines=target,
            ylim=zoom,
            legend=False,
        ),
        plots.Panel(
            f"{p.title}: validation accuracy against time",
            "training seconds",
            "accuracy",
            lines("seconds", "val_accuracy"),
            hlines=target,
            ylim=zoom,
            legend=False,
        ),
        plots.Panel(
            f"{p.title}: validation loss",
            "step",
            "cross-entropy (validation)",
            lines("step", "val_loss"),
            yscale="log",
            legend=False,
        ),
    ]
    caption = f"{p.title}: curves, mean over seeds, band = range over seeds."
    return _draw(result, book, f"{p.name}_curves", panels, names, caption)


def _accuracy_limits(result: CompareResult, p, names) -> tuple[float, float] | None:
    """Accuracy axes zoomed to where the curves spend the last three quarters of training
    (a 0-1 axis flattens a 96.9-97.4% spread into one line)."""
    values = []
    for c in names:
        table = result.curves[(p.name, c)]
        start = len(table["val_accuracy"]) // 4
        for key in ("val_accuracy_min", "val_accuracy_max"):
            values += [v for v in table[key][start:] if math.isfinite(v)]
    if not values:
        return None
    low, high = min(values), max(values)
    if p.target is not None:
        low = min(low, p.target.threshold)
    return max(0.0, low - 0.01), min(1.0, high + 0.005)


def _dataset_cost_figure(result: CompareResult, book: Sketchbook, p, names) -> Figure:
    """What each optimizer bought (test accuracy) and what it cost (seconds to the target)."""
    rows = {c: result.summaries[(p.name, c)] for c in names}

    def bars(title: str, ylabel: str, key: str) -> plots.Panel:
        means = [rows[c][f"{key}_mean"] for c in names]
        stds = [rows[c][f"{key}_std"] for c in names]
        return plots.Panel(title, "", ylabel, bars=plots.Bars(names, means, stds), legend=False)

    score = p.score
    panels = [bars(f"{p.title}: {score.label}", score.label, score.key)]
    if p.target is not None:
        panels.append(
            bars(f"{p.title}: training seconds to {p.target.label}", "seconds", "seconds_to_target")
        )
    else:
        panels.append(bars(f"{p.title}: training seconds", "seconds", "train_seconds"))
    caption = (
        f"{p.title}: what each optimizer bought (test accuracy) and what it cost (seconds to "
        "the target); error bars: standard deviation over seeds."
    )
    return _draw(result, book, f"{p.name}_cost", panels, names, caption)


def _sweep_panel(result: CompareResult, p, names, legend: bool) -> plots.Panel | None:
    """Final score against learning rate for each swept contender; None if none was swept."""
    # Test functions show the gap f - f* (same ranking as f, and positive for a log axis).
    shift = p.function.minimum_value if isinstance(p, FunctionProblem) else None
    lines, marks, diverged = [], [], []
    for c in names:
        tuning = result.tunings[(p.name, c)]
        if tuning.fixed:
            continue
        scores = {lr: score - (shift or 0.0) for lr, score in tuning.scores.items()}
        finite = {lr: v for lr, v in scores.items() if math.isfinite(v)}
        lines.append(plots.Line(c, list(finite), list(finite.values()), style="markers"))
        diverged += [(c, lr) for lr, v in scores.items() if not math.isfinite(v)]
        marks.append((c, tuning.lr, scores[tuning.lr]))
    if not lines:
        return None
    is_function = isinstance(p, FunctionProblem)
    return plots.Panel(
        p.title,
        "learning rate",
        ("final f - f*" if shift is not None else "final f")
        if is_function
        else "final validation loss",
        lines,
        xscale="log",
        yscale="linear" if is_function and shift is None else "log",
        marks=marks,
        diverged=diverged,
        legend=legend,
    )


def _sweep_figure(result: CompareResult, book: Sketchbook, names) -> Figure | None:
    panels: list[plots.Panel] = []
    for p in result.problems:
        panel = _sweep_panel(result, p, names, legend=not panels)
        if panel is not None:
            panels.append(panel)
    if not panels:
        return None
    caption = (
        "The learning-rate sweep with the first seed; circles mark the rates chosen. Diverged "
        "runs are left out."
    )
    return _draw(result, book, "sweep", panels, names, caption, columns=3, size=(4.4, 3.4))


def _figures(result: CompareResult, folder: RunFolder, runner: Runner | None) -> list[Figure]:
    """Draw every figure of the report (in ``runner``'s worker processes, a figure each, when
    it has several); return them in the order the report shows them."""
    names = [c.name for c in result.options.contenders]
    functions = [p for p in result.problems if isinstance(p, FunctionProblem)]
    book = Sketchbook(folder)
    figures = []
    if functions:
        figures.append(_landscapes_figure(result, book, functions, names))
        figures.append(_function_curves_figure(result, book, functions, names))
    for p in result.problems:
        if not isinstance(p, FunctionProblem):
            figures.append(_dataset_curves_figure(result, book, p, names))
            figures.append(_dataset_cost_figure(result, book, p, names))
    sweep = _sweep_figure(result, book, names)
    if runner is None:
        for job in book.jobs:
            plots.draw_job(job)
    else:
        runner.map(plots.draw_job, book.jobs, "figures")
    return figures + ([sweep] if sweep else [])


def _flat_rows(result: CompareResult):
    for (problem, contender), runs in result.runs.items():
        for run in runs:
            yield {
                "problem": problem,
                "optimizer": contender,
                "lr": run.spec.lr,
                "seed": run.spec.seed,
                **outcome(run),
            }


def _write_metrics(result: CompareResult, folder: RunFolder) -> None:
    """metrics.csv, summary.csv, sweep.csv, curves.csv, and all of it in metrics.json."""
    runs = list(_flat_rows(result))
    summaries = [
        {"problem": p, "optimizer": c, "lr": result.tunings[(p, c)].lr, **row}
        for (p, c), row in result.summaries.items()
    ]
    sweep = [
        {"problem": p, "optimizer": c, "lr": lr, "score": score, "chosen": lr == t.lr}
        for (p, c), t in result.tunings.items()
        for lr, score in t.scores.items()
    ]
    curve_rows = [
        {"problem": p, "optimizer": c, **{k: v[i] for k, v in table.items()}}
        for (p, c), table in result.curves.items()
        for i in range(len(table["step"]))
    ]
    folder.write_csv("metrics.csv", runs)
    folder.write_csv("summary.csv", summaries)
    folder.write_csv("sweep.csv", sweep)
    folder.write_csv("curves.csv", curve_rows)
    verdicts = [
        {
            "problem": v.problem,
            "ranking": v.ranking,
            "winner": v.winner,
            # who won: the winner, or every form of the algorithm that won as one (as the
            # report counts wins); empty where nothing won
            "winners": v.winners,
            "one_algorithm": v.one_algorithm,
            "tied": v.tied,
            "unstable": v.unstable,
            "score": v.score.key,
            "sentence": v.sentence,
        }
        for v in result.verdicts
    ]
    folder.write_json(
        "metrics.json", {"verdicts": verdicts, "summary": summaries, "runs": runs, "sweep": sweep}
    )


def _verdict_section(result: CompareResult) -> Section:
    return Section(
        "Verdict",
        [
            "What the seeds support on each problem. Each optimizer's learning rate was tuned "
            "on the validation split (the function itself for test functions) with a log-grid "
            "sweep and the same budget, then every seed was run at that rate; scores are read "
            "at the end of the budget, as mean ± standard deviation over seeds. A winner is "
            f"named only where it beats every other on each seed and beyond the paired 95% "
            f"interval (at least {verdicts.MIN_SEEDS} seeds; gaps to the minimum compared in "
            f"log scale, those below {verdicts.RESOLUTION:g} as equal); otherwise the contenders "
            "that tie with the best are named. A contender with a run that diverged or ended far "
            "worse than its own best is unstable and not ranked.",
            takeaway(result),
        ],
        [_ranking_table(result), *_profile_table(result)],
        bullets=[v.sentence for v in result.verdicts],
    )


def _profile_table(result: CompareResult) -> list[Table]:
    """The performance profile across problems (none with fewer than two problems)."""
    costs: dict[str, dict[str, float]] = {}
    for problem, v in zip(result.problems, result.verdicts):
        score = problem.score
        row = {}
        for c in result.options.contenders:
            mean = result.summaries[(problem.name, c.name)][f"{score.key}_mean"]
            if score.higher_is_better:  # accuracy: the error rate
                cost = 1.0 - mean
            else:
                cost = max(mean, verdicts.RESOLUTION) if score.key == "gap" else mean
            row[c.name] = math.inf if c.name in v.unstable or not cost > 0 else cost
        if any(math.isfinite(x) for x in row.values()):
            costs[problem.name] = row
    if len(costs) < 2:
        return []
    profile = verdicts.performance_profile(costs)
    titles = {c.name: c.title for c in result.options.contenders}
    return [
        Table(
            "profile",
            "Performance profile: the share of problems on which each optimizer's score is "
            "within a factor tau of the best",
            ["optimizer", *[f"tau = {tau:g}" for tau in verdicts.PROFILE_RATIOS]],
            [
                [titles[c.name], *[f"{x:.0%}" for x in profile[c.name]]]
                for c in result.options.contenders
                if c.name in profile
            ],
            note="Dolan and Moré (2002), as MLCommons AlgoPerf aggregates: scores as costs "
            "(the error rate 1 - accuracy, the gap f - f* floored at 1e-10, the loss), unstable "
            "runs never within any factor. Higher and further left is better.",
        )
    ]


def takeaway(result: CompareResult) -> str:
    """The verdicts in plain words, with the guide's sections that explain them."""
    clear = [v for v in result.verdicts if v.winners]
    titles = {c.name: c.title for c in result.options.contenders}
    problems = {p.name: p.title for p in result.problems}

    def won(v: Verdict) -> str:
        if v.winner is not None:
            return titles[v.winner]
        return f"one algorithm, {_names([titles[n] for n in v.winners])},"

    if clear:
        said = "; ".join(f"{won(v)} on {problems[v.problem]}" for v in clear)
        text = (
            f"In short: a clear winner on {len(clear)} of {len(result.verdicts)} problems ({said})"
        )
    else:
        text = (
            f"In short: no optimizer is clearly best on any of the {len(result.verdicts)} "
            "problems; with tuned learning rates, most differences are within the noise of the "
            "seeds, as in larger benchmarks (Schmidt et al., ICML 2021)"
        )
    shaky = sorted({titles[n] for v in result.verdicts for n in v.unstable})
    if shaky:
        text += f". Unstable somewhere: {_names(shaky)}"
    return (
        text + ". Why they behave as they do: docs/guide.md, sections 3 (momentum), 4 "
        "(RMSprop), 5 (Adam, with and without bias correction) and 8 (this comparison)."
    )


def _functions_section(options: CompareOptions, by_name: dict[str, Figure]) -> Section:
    return Section(
        "Test functions",
        [
            f"Full-gradient descent for {options.steps} steps from each function's "
            "start point, moved by 1% of the plot for each seed. The score is the final "
            f"gap f - f*; the target is a gap of {options.target_gap:g}."
        ],
        figures=[by_name["figures/landscapes.png"], by_name["figures/function_curves.png"]],
    )


def _about(problem, options: CompareOptions) -> str:
    """What the problem is: the function and its start, or the data, the model and the budget."""
    if isinstance(problem, FunctionProblem):
        start = problem.function.start
        return (
            f"f(x, y) = {problem.function.formula}: {problem.function.about}. "
            f"Start ({start[0]:g}, {start[1]:g})."
        )
    if not isinstance(problem, DatasetProblem):  # the user's own
        return problem.about(options.epochs)
    split = problem.split()
    model = (
        "Logistic regression"
        if problem.hidden == 0
        else f"MLP {split.features}-"
        + "-".join([str(problem.hidden)] * problem.depth)
        + f"-{split.classes} (ReLU, PyTorch's default initialisation)"
    )
    return (
        f"{problem.dataset.about}; {len(split.y_train)} training, {len(split.y_val)} "
        f"validation and {len(split.y_test)} test samples. "
        + model
        + f", mini-batches of {problem.batch_size or 'all'}, {options.epochs} epochs "
        f"({problem.steps_per_epoch() * options.epochs} steps). The score is the test "
        f"accuracy; the target is {problem.target.label}."
    )


def _problem_section(result: CompareResult, problem, by_name: dict[str, Figure]) -> Section:
    section = Section(
        problem.title, [_about(problem, result.options)], [_summary_table(result, problem)]
    )
    if not isinstance(problem, FunctionProblem):
        section.figures += [
            by_name[f"figures/{problem.name}_{kind}.png"] for kind in ("curves", "cost")
        ]
    return section


def _sweep_section(result: CompareResult, figures: list[Figure]) -> Section:
    options = result.options
    return Section(
        "Learning-rate sweep",
        [
            f"Grid: {', '.join(value(lr, 'lr') for lr in sorted(options.lr_grid))}"
            + ("; refined halfway (in log scale) around each winner." if options.refine else ".")
        ],
        [_sweep_table(result)],
        [f for f in figures if f.path == "figures/sweep.png"],
    )


def write_compare(
    result: CompareResult, folder: RunFolder, runner: Runner | None = None
) -> Document:
    """Write the metrics, figures (in ``runner``'s worker processes if given), report.html
    and summary.md; return the report document."""
    options = result.options
    _write_metrics(result, folder)
    figures = _figures(result, folder, runner)
    by_name = {f.path: f for f in figures}
    sections = [_verdict_section(result)]
    if any(isinstance(p, FunctionProblem) for p in result.problems):
        sections.append(_functions_section(options, by_name))
    sections += [_problem_section(result, problem, by_name) for problem in result.problems]
    sections.append(_sweep_section(result, figures))
    contenders = ", ".join(f"{c.title} = {c.describe()}" for c in options.contenders)
    sections.append(Section("Optimizers", [contenders]))
    return Document(
        "optimlab compare",
        f"{len(options.contenders)} optimizers on {len(result.problems)} problems, "
        f"{options.seeds} seeds each, learning rates tuned per optimizer and problem",
        sections,
    )
