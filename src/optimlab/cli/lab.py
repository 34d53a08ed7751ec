"""The lab experiments: ``optimlab compare``, ``landscape``, ``ewa``, ``schedule``, ``batch-size``.

Each command parses its options and hands the work to its module in :mod:`optimlab.lab`
(imported when the command runs, so ``optimlab --help`` stays quick), then publishes the run
folder.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import click

from ..lab.contenders import NOTES_CONTENDERS
from ..lab.problems import DEFAULT_DATASETS, DEFAULT_FUNCTIONS
from .options import (
    batch_sizes,
    betas,
    config_option,
    contender,
    contenders,
    datasets,
    debug_option,
    device_option,
    functions,
    jobs_option,
    lr_grid_options,
    names,
    out_option,
    overwrite_option,
    point,
    progress,
    publish,
    run_folder,
    single_batch_size,
)

__all__ = ["COMMANDS", "batch_size", "compare", "ewa", "landscape", "schedule"]

_OPTIMIZERS_HELP = (
    "Comma-separated names or specs (name:key=value,...; lr=... fixes the rate); "
    "'notes' is the default set, 'beyond' the optimizers beyond the notes, 'all' everything."
)

# --- compare ------------------------------------------------------------------------------------


@click.command()
@config_option
@click.option(
    "--optimizers",
    "-o",
    default=",".join(NOTES_CONTENDERS),
    show_default=True,
    callback=contenders,
    help=_OPTIMIZERS_HELP,
)
@click.option(
    "--problems",
    default=",".join(DEFAULT_FUNCTIONS),
    show_default=True,
    callback=names("test function", functions, allow_none=True),
    help="Comma-separated 2-D test functions, or none.",
)
@click.option(
    "--datasets",
    default=",".join(DEFAULT_DATASETS),
    show_default=True,
    callback=names("data set", datasets, allow_none=True),
    help="Comma-separated data sets, or none.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="First seed.")
@click.option(
    "--seeds", default=3, show_default=True, type=click.IntRange(1), help="Number of seeds."
)
@click.option(
    "--steps",
    default=200,
    show_default=True,
    type=click.IntRange(1),
    help="Steps per run on a test function.",
)
@click.option(
    "--epochs",
    default=10,
    show_default=True,
    type=click.IntRange(1),
    help="Epochs per run on a data set.",
)
@click.option(
    "--batch-size",
    default="32",
    show_default=True,
    callback=single_batch_size,
    help="Mini-batch size on data sets ('full' for batch gradient descent).",
)
@click.option(
    "--hidden",
    default=32,
    show_default=True,
    type=click.IntRange(0),
    help="Hidden units of each layer of the MLP (0: logistic regression).",
)
@click.option(
    "--depth",
    default=6,
    show_default=True,
    type=click.IntRange(1),
    help="Hidden layers of the MLP (deep and narrow by default, where plain SGD starts "
    "slowly; --depth 1 --hidden 64 is an easy problem).",
)
@lr_grid_options
@click.option(
    "--target-accuracy",
    type=click.FloatRange(0, 1),
    default=None,
    help="Validation accuracy that counts as reached (default: per data set, 0.95 on digits).",
)
@click.option(
    "--target-gap",
    type=click.FloatRange(0, min_open=True),
    default=1e-3,
    show_default=True,
    help="Gap f - f* that counts as reached on test functions.",
)
@click.option(
    "--model",
    metavar="FILE.py:FUNCTION",
    default=None,
    help="Your model: FUNCTION(features, outputs) in FILE.py returns a torch.nn.Module; "
    "compared on --data instead of the built-in problems (unless those are named too).",
)
@click.option(
    "--data",
    "data_path",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Your data for --model: FILE.npz (arrays X and y) or FILE.csv (the target last).",
)
@click.option(
    "--task",
    type=click.Choice(["auto", "classification", "regression"]),
    default="auto",
    show_default=True,
    help="With --model: what the targets are (auto: integer targets with at most 50 values "
    "are classes).",
)
@out_option
@overwrite_option
@device_option
@jobs_option
@debug_option
@click.pass_context
def compare(ctx: click.Context, **options: Any) -> None:
    """Compare optimizers fairly: tuned learning rates, several seeds, a report.

    Each optimizer's learning rate is chosen by a log-grid sweep on the validation split (the
    function value on test functions), then every seed runs at that rate. The run folder holds
    metrics (CSV, JSON), figures (PNG, SVG), report.html and summary.md.
    """
    from ..lab.compare import CompareOptions, run_compare, write_compare
    from ..lab.runner import Runner

    users = _user_problems(ctx, options)
    if not options["problems"] and not options["datasets"] and not users:
        raise click.UsageError("--problems none and --datasets none leave nothing to compare")
    folder = run_folder(ctx, options["out"], options["seed"], options)
    settings = CompareOptions(
        contenders=options["optimizers"],
        functions=options["problems"],
        datasets=options["datasets"],
        seed=options["seed"],
        seeds=options["seeds"],
        steps=options["steps"],
        epochs=options["epochs"],
        batch_size=options["batch_size"],
        hidden=options["hidden"],
        depth=options["depth"],
        lr_grid=options["lr_grid"],
        refine=options["refine"],
        target_accuracy=options["target_accuracy"],
        target_gap=options["target_gap"],
        device=options["device"],
        jobs=options["jobs"],
        user_problems=users,
    )
    with progress() as advance, Runner(settings.jobs, advance) as runner:
        result = run_compare(settings, runner=runner)
        document = write_compare(result, folder, runner)  # the figures drawn by the workers too
    for verdict in result.verdicts:
        click.echo(verdict.sentence)
    publish(folder, document)


def _user_problems(ctx: click.Context, options: dict[str, Any]) -> tuple[Any, ...]:
    """``--model`` on ``--data``, checked before anything runs (its mistakes are the user's:
    exit 2); without --problems or --datasets on the command line, only it is compared."""
    from ..lab.user import UserInputError, UserProblem

    model, data = options["model"], options["data_path"]
    if model is None and data is None:
        return ()
    if model is None or data is None:
        raise click.UsageError("--model and --data go together: your model, on your data", ctx)
    for name in ("problems", "datasets"):
        if ctx.get_parameter_source(name) is click.core.ParameterSource.DEFAULT:
            options[name] = ()
    task = None if options["task"] == "auto" else options["task"]
    problem = UserProblem(
        model, str(data), task, options["seed"], options["batch_size"],
        options["target_accuracy"],
    )  # fmt: skip
    try:
        split = problem.split()
        problem.build(split.features, split.classes if problem.classification else 1)
    except UserInputError as error:
        raise click.UsageError(str(error), ctx) from None
    click.echo(f"Your data: {problem.about(options['epochs'])}", err=True)
    return (problem,)


# --- landscape ----------------------------------------------------------------------------------


@click.command()
@config_option
@click.option(
    "--problems",
    default=None,
    callback=names("test function", functions),
    help="Comma-separated test functions (default: all of them).",
)
@click.option(
    "--optimizers",
    "-o",
    default=",".join(NOTES_CONTENDERS),
    show_default=True,
    callback=contenders,
    help=_OPTIMIZERS_HELP,
)
@click.option("--steps", default=300, show_default=True, type=click.IntRange(1))
@lr_grid_options
@click.option("--start", default=None, callback=point, help="Start point x,y for every path.")
@click.option("--animate/--no-animate", default=False, help="Also write a GIF per function.")
@out_option
@overwrite_option
@device_option
@jobs_option
@debug_option
@click.pass_context
def landscape(ctx: click.Context, **options: Any) -> None:
    """Draw each optimizer's path over 2-D test functions with known minima.

    Learning rates are tuned per function (lowest final value) unless a spec fixes lr.
    """
    from ..lab.landscape import LandscapeOptions, run_landscape, write_landscape

    folder = run_folder(ctx, options["out"], 0, options)
    settings = LandscapeOptions(
        functions=options["problems"] or tuple(functions()),
        contenders=options["optimizers"],
        steps=options["steps"],
        lr_grid=options["lr_grid"],
        refine=options["refine"],
        start=options["start"],
        animate=options["animate"],
        device=options["device"],
        jobs=options["jobs"],
    )
    with progress() as advance:
        result = run_landscape(settings, advance)
    publish(folder, write_landscape(result, folder))


# --- ewa ----------------------------------------------------------------------------------------


@click.command()
@click.option(
    "--betas", default="0.5,0.8,0.9,0.98", show_default=True, callback=betas, help="Betas."
)
@click.option("--days", default=180, show_default=True, type=click.IntRange(2))
@click.option(
    "--day",
    default=None,
    type=click.IntRange(1),
    help="The day n whose weights beta^(n-i)(1-beta) are shown (default: 20, or the last day "
    "of a shorter series).",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Average a column of this CSV instead of the generated series.",
)
@click.option("--column", default=None, help="CSV column (default: the last numeric one).")
@out_option
@overwrite_option
@debug_option
@click.pass_context
def ewa(ctx: click.Context, **options: Any) -> None:
    """Exponentially weighted averages of a noisy daily series, with and without bias correction."""
    from ..lab.averages import EWAOptions, notes_example_table, run_ewa, write_ewa

    if options["column"] is not None and options["csv_path"] is None:
        raise click.UsageError("--column needs --csv")
    try:
        result = run_ewa(
            EWAOptions(
                days=options["days"],
                betas=options["betas"],
                day=options["day"],
                seed=options["seed"],
                csv_path=options["csv_path"],
                column=options["column"],
            )
        )
    except ValueError as error:  # (the day: the series' length is known only now)
        raise click.BadParameter(str(error), param_hint="--day") from None
    folder = run_folder(ctx, options["out"], options["seed"], options)
    example = notes_example_table()  # what a student looks for first
    click.echo(example.caption)
    click.echo(
        "  " + "  ".join(f"{h:>12.12}" for h in ("day", "temperature", "average", "corrected"))
    )
    for row in example.rows:
        click.echo("  " + "  ".join(f"{cell:>12}" for cell in row))
    publish(folder, write_ewa(result, folder))


# --- schedule -----------------------------------------------------------------------------------


@click.command()
@click.argument("specs", nargs=-1, required=True)
@click.option("--steps", default=10000, show_default=True, type=click.IntRange(1))
@click.option(
    "--print",
    "print_values",
    is_flag=True,
    help="Print step,lr as CSV on standard output (12 significant digits) and write nothing, "
    "unless --out is given too.",
)
@click.option(
    "--every",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="With --print, print every k-th step.",
)
@click.option("--log/--linear", default=False, help="Logarithmic learning-rate axis.")
@out_option
@overwrite_option
@debug_option
@click.pass_context
def schedule(ctx: click.Context, specs: tuple[str, ...], **options: Any) -> None:
    """Plot learning-rate schedules, e.g. step_decay:lr=0.1,gamma=0.9,step_size=1000.

    `optimlab list schedules` shows every schedule; lists use /, e.g. boundaries=1000/2000.
    """
    from ..lab.schedule_curves import parse_schedule, schedule_values, write_schedules

    for spec in specs:
        try:
            parse_schedule(spec)
        except (TypeError, ValueError) as error:
            raise click.BadParameter(str(error), param_hint="SPEC") from None
    values = schedule_values(specs, options["steps"])
    folder = None
    if options["out"] is not None or not options["print_values"]:  # --print alone writes nothing
        # first: a folder in use is refused (exit 2) before anything is printed
        folder = run_folder(ctx, options["out"], None, {"specs": specs, **options})
    if options["print_values"]:
        _print_schedules(specs, values, options["steps"], options["every"])
    if folder is not None:
        publish(folder, write_schedules(values, folder, options["log"]))


def _print_schedules(specs: tuple[str, ...], values, steps: int, every: int) -> None:
    """step,lr as CSV on standard output, one column per spec, every ``every``-th step."""
    # csv quotes the header: a spec's own commas would otherwise split it into columns.
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["step", *specs])
    for t in range(0, steps, every):
        # 12 significant digits: 0.09, not the float's full 0.09000000000000001
        writer.writerow([t, *(f"{values[s][t]:.12g}" for s in specs)])
    click.echo(table.getvalue(), nl=False)


# --- batch-size ---------------------------------------------------------------------------------


@click.command("batch-size")
@config_option
@click.option(
    "--dataset",
    default="digits",
    show_default=True,
    callback=lambda ctx, p, v: names("data set", datasets)(ctx, p, v)[0],
    help="The data set.",
)
@click.option(
    "--batch-sizes",
    default="1,16,128,full",
    show_default=True,
    callback=batch_sizes,
    help="Comma-separated batch sizes; 'full' is all m training samples.",
)
@click.option("--epochs", default=5, show_default=True, type=click.IntRange(1))
@click.option(
    "--optimizer",
    "-o",
    default="sgd",
    show_default=True,
    callback=contender,
    help="Name or spec of the optimizer.",
)
@click.option(
    "--lr",
    default="0.05",
    show_default=True,
    help="Learning rate for every batch size, or 'auto' to tune it per batch size.",
)
@lr_grid_options
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--seeds", default=1, show_default=True, type=click.IntRange(1))
@click.option("--hidden", default=64, show_default=True, type=click.IntRange(0))
@out_option
@overwrite_option
@device_option
@jobs_option
@debug_option
@click.pass_context
def batch_size(ctx: click.Context, **options: Any) -> None:
    """Batch, stochastic and mini-batch gradient descent: time per epoch, loss per epoch/second."""
    from ..lab.batch_size import BatchSizeOptions, run_batch_size, write_batch_size

    lr = _fixed_lr(options["lr"])
    folder = run_folder(ctx, options["out"], options["seed"], options)
    settings = BatchSizeOptions(
        dataset=options["dataset"],
        batch_sizes=options["batch_sizes"],
        epochs=options["epochs"],
        contender=options["optimizer"],
        lr=lr,
        lr_grid=options["lr_grid"],
        refine=options["refine"],
        seed=options["seed"],
        seeds=options["seeds"],
        hidden=options["hidden"],
        device=options["device"],
        jobs=options["jobs"],
    )
    with progress() as advance:
        result = run_batch_size(settings, advance)
    publish(folder, write_batch_size(result, folder))


def _fixed_lr(text: str) -> float | None:
    """``--lr``: a number > 0, or None for ``auto`` (tune it per batch size)."""
    if text.strip() == "auto":
        return None
    try:
        lr = float(text)
    except ValueError:
        lr = math.nan
    if not math.isfinite(lr) or lr <= 0:
        raise click.BadParameter(
            f"expected a number > 0 or auto, got {text!r}", param_hint="'--lr'"
        )
    return lr


COMMANDS = (compare, landscape, ewa, schedule, batch_size)
