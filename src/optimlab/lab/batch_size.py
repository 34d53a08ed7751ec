"""``optimlab batch-size``: the notes' batch / stochastic / mini-batch study on one data set.

The same network and optimizer train for the same number of epochs with batch sizes from 1
(stochastic gradient descent) to ``m`` (batch gradient descent, ``None`` here). A small batch
takes many cheap, noisy steps per epoch; the whole set takes one exact, expensive step. The
study measures what the notes argue about (seed 000, section 2): seconds per epoch, and the
training loss against epochs and against seconds.

By default every batch size uses the same learning rate; ``lr=None`` tunes it per batch size
with the sweep of :func:`optimlab.lab.runner.tune` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from . import plots
from .contenders import CONTENDERS, Contender
from .formatting import stat, value
from .problems import DatasetProblem, make_problem
from .report import Document, Figure, Section, Table
from .rundir import RunFolder
from .runner import DEFAULT_LR_GRID, Budget, Runner, RunResult, RunSpec, Tuning, tune
from .summary import aggregate, curves

__all__ = ["BatchSizeOptions", "batch_label", "run_batch_size", "write_batch_size"]


@dataclass(frozen=True)
class BatchSizeOptions:
    dataset: str = "digits"
    batch_sizes: tuple[int | None, ...] = (1, 16, 128, None)  # None: all m samples
    epochs: int = 5
    contender: Contender = CONTENDERS["sgd"]
    lr: float | None = 0.05
    lr_grid: tuple[float, ...] = DEFAULT_LR_GRID
    refine: bool = True
    seed: int = 0
    seeds: int = 1
    hidden: int = 64
    device: str = "cpu"
    jobs: int = 1


@dataclass
class BatchSizeResult:
    options: BatchSizeOptions
    problems: list[DatasetProblem]
    tunings: list[Tuning]
    runs: list[list[RunResult]]

    def label(self, problem: DatasetProblem) -> str:
        return batch_label(problem)


def batch_label(problem: DatasetProblem) -> str:
    """``stochastic (1)``, ``mini-batch (16)`` or ``batch (all 341)``: the problem's descent."""
    m = len(problem.split().y_train)
    size = problem.batch_size
    if size is None or size >= m:
        return f"batch (all {m})"
    return "stochastic (1)" if size == 1 else f"mini-batch ({size})"


def run_batch_size(
    options: BatchSizeOptions, progress: Callable[[str, int], Callable[[], None]] | None = None
) -> BatchSizeResult:
    problems = [
        make_problem(options.dataset, split_seed=options.seed, batch_size=b, hidden=options.hidden)
        for b in options.batch_sizes
    ]
    contender = options.contender
    if options.lr is not None and contender.lr is None:
        arguments = (*contender.arguments, ("lr", options.lr))
        contender = replace(contender, arguments=arguments)
    budget = Budget(epochs=options.epochs)

    def every(problem: DatasetProblem) -> int:
        return max(1, problem.steps_per_epoch() // 4)

    seeds = [options.seed + i for i in range(options.seeds)]
    with Runner(options.jobs, progress) as runner:
        tuned = tune(
            runner,
            [(p, contender) for p in problems],
            grid=options.lr_grid,
            seeds=seeds[:1],
            budget=budget,
            eval_every=every,
            refine=options.refine,
            device=options.device,
        )
        tunings = [tuned[(p, contender)] for p in problems]
        specs = [
            [
                RunSpec(p, contender, t.lr, s, p.steps(budget), every(p), options.device)
                for s in seeds
            ]
            for p, t in zip(problems, tunings)
        ]
        flat = [s for group in specs for s in group]
        results = dict(zip(flat, runner.run(flat, "training with each batch size")))
    return BatchSizeResult(options, problems, tunings, [[results[s] for s in g] for g in specs])


# One batch size's curves: the epoch of each evaluation, and curves() of its runs.
Curves = tuple[list[float], dict[str, list[float]]]


def _metrics_row(
    result: BatchSizeResult, label: str, problem: DatasetProblem, tuning: Tuning, runs
) -> dict:
    """One batch size: its steps per epoch, learning rate, seconds per epoch and summary."""
    summary = aggregate(runs)
    return {
        "batch": label,
        "batch_size": problem.batch_size or len(problem.split().y_train),
        "steps_per_epoch": problem.steps_per_epoch(),
        "lr": tuning.lr,
        # steady state: the median step (after an untimed warm-up) times the steps of an epoch
        "seconds_per_epoch": summary["step_seconds_mean"] * problem.steps_per_epoch(),
        **summary,
    }


def _curves_by_epoch(problem: DatasetProblem, runs) -> Curves:
    table = curves(runs, ["train_loss", "val_accuracy"])
    return [step / problem.steps_per_epoch() for step in table["step"]], table


def _draw_batch_size_figure(
    result: BatchSizeResult, folder: RunFolder, rows: list[dict], tables: list[Curves]
) -> None:
    """figures/batch_size: the loss against epochs and seconds, and the seconds per epoch."""
    labels = [row["batch"] for row in rows]
    title = result.problems[0].title
    losses_by_epoch = [
        plots.Line(label, epochs, t["train_loss"], t["train_loss_min"], t["train_loss_max"])
        for label, (epochs, t) in zip(labels, tables)
    ]
    losses_by_time = [
        plots.Line(label, t["seconds"], t["train_loss"]) for label, (_, t) in zip(labels, tables)
    ]
    per_epoch = [row["seconds_per_epoch"] for row in rows]
    panels = [
        plots.Panel(
            f"{title}: training loss per epoch",
            "epoch",
            "cross-entropy (training)",
            losses_by_epoch,
            yscale="log",
        ),
        plots.Panel(
            "... and per second of training",
            "training seconds",
            "cross-entropy (training)",
            losses_by_time,
            yscale="log",
            legend=False,
        ),
        plots.Panel(
            "Seconds per epoch",
            "",
            "seconds",
            bars=plots.Bars(labels, per_epoch),
            yscale="log",
            legend=False,
        ),
    ]
    plots.draw(panels, folder.file("figures/batch_size"), order=labels, columns=3, size=(4.8, 3.8))


def _batch_size_table(result: BatchSizeResult, rows: list[dict]) -> Table:
    """One line per batch size: its cost per epoch and where the loss and accuracy ended."""
    options = result.options
    return Table(
        "batch-sizes",
        f"{options.epochs} epochs of {options.contender.title} on {result.problems[0].title}, "
        f"{options.seeds} seed(s)",
        [
            "batch",
            "steps per epoch",
            "lr",
            "seconds per epoch",
            "final training loss",
            "final validation accuracy",
        ],
        [
            [
                row["batch"],
                str(row["steps_per_epoch"]),
                value(row["lr"], "lr"),
                value(row["seconds_per_epoch"], "seconds"),
                stat(row["train_loss_mean"], row["train_loss_std"], "float"),
                stat(row["val_accuracy_mean"], row["val_accuracy_std"], "percent"),
            ]
            for row in rows
        ],
    )


def write_batch_size(result: BatchSizeResult, folder: RunFolder) -> Document:
    """metrics.csv, curves.csv, figures/batch_size, and the summary."""
    each = list(zip(result.problems, result.tunings, result.runs))
    rows = [_metrics_row(result, result.label(p), p, t, runs) for p, t, runs in each]
    tables = [_curves_by_epoch(p, runs) for p, _, runs in each]
    curve_rows = [
        {"batch": row["batch"], "epoch": epochs[i], **{k: v[i] for k, v in table.items()}}
        for row, (epochs, table) in zip(rows, tables)
        for i in range(len(epochs))
    ]
    folder.write_csv("metrics.csv", rows)
    folder.write_csv("curves.csv", curve_rows)
    folder.write_json("metrics.json", {"batch_sizes": rows, "curves": curve_rows})
    _draw_batch_size_figure(result, folder, rows, tables)
    options = result.options
    lr_text = (
        f"learning rate {value(options.lr, 'lr')} for every batch size"
        if options.lr is not None
        else "learning rate tuned per batch size on the validation loss"
    )
    return Document(
        "optimlab batch-size",
        f"Batch, stochastic and mini-batch gradient descent on {result.problems[0].title}; "
        f"{lr_text}",
        [
            Section(
                "Batch size",
                [
                    "Per epoch, small batches take many steps and usually lower the loss most; "
                    "per second, the best batch is the one whose steps are cheap but not so "
                    "small that the per-step overhead dominates."
                ],
                [_batch_size_table(result, rows)],
                [
                    Figure(
                        "figures/batch_size.png",
                        "Training loss against epochs and seconds "
                        "(band: range over seeds), and the time one epoch takes.",
                    )
                ],
            )
        ],
    )
