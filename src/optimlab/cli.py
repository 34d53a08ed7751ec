"""The ``optimlab`` command: one function per subcommand, the work done in :mod:`optimlab.lab`.

    optimlab compare                      the main job: every optimizer of the notes, tuned
                                          fairly, on test functions and handwritten digits
    optimlab landscape                    paths over the 2-D test functions (optionally a GIF)
    optimlab ewa                          exponentially weighted averages of a daily series
    optimlab schedule SPEC...             learning-rate schedules over the steps
    optimlab batch-size                   batch, stochastic and mini-batch gradient descent
    optimlab list [WHAT]                  optimizers, schedules, problems and data sets

Every command that computes writes a run folder (``--out``; by default ``runs/<command>-<time>``)
holding ``run.json`` (the exact command, the seed, the versions), the metrics as CSV and JSON,
the figures as PNG and SVG, ``report.html`` and ``summary.md``.

Errors: a usage error (unknown name, bad option value, malformed spec or config) prints one
line and exits with 2; any other failure prints one line and exits with 1; ``--debug`` (before
or after the subcommand) adds the traceback.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import io
import math
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from .lab.contenders import NOTES_CONTENDERS, parse_contender, parse_contender_list
from .lab.datasets import DATASETS
from .lab.functions import FUNCTIONS
from .lab.problems import DEFAULT_DATASETS, DEFAULT_FUNCTIONS
from .lab.runner import DEFAULT_LR_GRID

__all__ = ["main"]

# --- error handling: one line, exit 2 for usage errors and 1 for failures ---------------------


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class LabGroup(click.Group):
    """A click group whose errors are one line on stderr (tracebacks only with ``--debug``)."""

    def main(  # type: ignore[override]
        self,
        args: list[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        args = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in args or os.environ.get("OPTIMLAB_DEBUG", "") not in ("", "0")
        if not args:
            args = ["--help"]
        extra.setdefault("obj", {"argv": [a for a in args if a != "--debug"]})
        try:
            code = super().main(args, prog_name or "optimlab", complete_var, False, **extra)
        except click.UsageError as error:
            where = error.ctx.command_path if error.ctx else "optimlab"
            self._fail(f"{_one_line(error.format_message())} (see '{where} --help')", 2, debug)
        except click.ClickException as error:
            self._fail(_one_line(error.format_message()), error.exit_code, debug)
        except (click.Abort, KeyboardInterrupt):
            self._fail("interrupted", 130, debug)
        except Exception as error:  # the one place every other failure becomes one line
            from .lab.rundir import LabError

            message = _one_line(str(error)) or type(error).__name__
            if not isinstance(error, (LabError, OSError)):  # name the kind of an unforeseen one
                message = f"{type(error).__name__}: {message}"
            self._fail(message, 1, debug)
        sys.exit(code if isinstance(code, int) else 0)

    @staticmethod
    def _fail(message: str, code: int, debug: bool) -> None:
        if debug:
            traceback.print_exc()
        click.echo(f"Error: {message}", err=True)
        sys.exit(code)


def _debug_option(function: Callable) -> Callable:
    # Accepted after the subcommand too; main() has already looked for it in the arguments.
    return click.option(
        "--debug", is_flag=True, expose_value=False, help="Show the full traceback on failure."
    )(function)


@click.group("optimlab", cls=LabGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show the full traceback on failure.")
@click.version_option(package_name="optimlab", prog_name="optimlab")
def main(debug: bool) -> None:
    """optimlab: compare the optimizers of the notes on your machine, fairly, with figures.

    Start with `optimlab compare` (what `make run` runs); `optimlab list` shows the names
    that the options accept.
    """


# --- option types ------------------------------------------------------------------------------


def _names(kind: str, valid: Callable[[], list[str]], allow_none: bool = False):
    """A callback that splits a comma-separated list and checks every name against ``valid``."""

    def callback(ctx: click.Context, param: click.Parameter, text: str | None) -> tuple[str, ...]:
        if text is None:
            return ()
        names = [n.strip() for n in text.split(",") if n.strip()]
        if allow_none and names == ["none"]:
            return ()
        known = valid()
        for name in names:
            if name not in known:
                raise click.BadParameter(
                    f"unknown {kind} {name!r}; valid names: {', '.join(known)}"
                    + (", or none" if allow_none else "")
                )
        if not names:
            raise click.BadParameter(f"expected at least one {kind} name")
        return tuple(dict.fromkeys(names))

    return callback


def _functions() -> list[str]:
    return list(FUNCTIONS)


def _datasets() -> list[str]:
    return list(DATASETS)


def _contenders(ctx: click.Context, param: click.Parameter, text: str) -> tuple:
    try:
        return tuple(parse_contender_list(text))
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _contender(ctx: click.Context, param: click.Parameter, text: str):
    try:
        return parse_contender(text)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _floats(positive: bool = True):
    def callback(ctx: click.Context, param: click.Parameter, text: str) -> tuple[float, ...]:
        values = []
        for item in (p.strip() for p in text.split(",") if p.strip()):
            try:
                number = float(item)
            except ValueError:
                raise click.BadParameter(f"{item!r} is not a number") from None
            if not math.isfinite(number) or (positive and number <= 0):
                raise click.BadParameter(f"{item!r} must be a finite number > 0")
            values.append(number)
        if not values:
            raise click.BadParameter("expected at least one number")
        return tuple(values)

    return callback


def _betas(ctx: click.Context, param: click.Parameter, text: str) -> tuple[float, ...]:
    values = _floats(positive=False)(ctx, param, text)
    for beta in values:
        if not 0 <= beta < 1:
            raise click.BadParameter(f"beta must be in [0, 1), got {beta:g}")
    return values


def _batch_sizes(ctx: click.Context, param: click.Parameter, text: str) -> tuple:
    sizes: list[int | None] = []
    for item in (p.strip() for p in text.split(",") if p.strip()):
        if item in ("full", "m", "all"):
            sizes.append(None)
            continue
        try:
            size = int(item)
        except ValueError:
            raise click.BadParameter(
                f"{item!r} is not a batch size (a whole number or 'full')"
            ) from None
        if size < 1:
            raise click.BadParameter(f"batch size must be >= 1, got {size}")
        sizes.append(size)
    if not sizes:
        raise click.BadParameter("expected at least one batch size")
    return tuple(dict.fromkeys(sizes))


def _batch_size(ctx: click.Context, param: click.Parameter, text: str) -> int | None:
    sizes = _batch_sizes(ctx, param, text)
    if len(sizes) != 1:
        raise click.BadParameter(f"expected one batch size, got {text!r}")
    return sizes[0]


def _point(ctx: click.Context, param: click.Parameter, text: str | None):
    if text is None:
        return None
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected x,y (two numbers), got {text!r}") from None
    return (x, y)


def _device(ctx: click.Context, param: click.Parameter, text: str) -> str:
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise click.BadParameter(
            f"{text!r} is not a torch device (cpu, cuda, cuda:1, mps)"
        ) from None
    available = {
        "cpu": lambda: True,
        "cuda": torch.cuda.is_available,
        "mps": lambda: torch.backends.mps.is_available(),
    }.get(device.type, lambda: False)
    if not available():
        raise click.BadParameter(
            f"{text!r} is not available on this machine (torch {torch.__version__})"
        )
    return str(device)


def _config(ctx: click.Context, param: click.Parameter, path: str | None) -> None:
    """Read a TOML file whose keys are this command's options: they become its defaults."""
    if path is None:
        return
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    try:
        with open(path, "rb") as handle:
            table = tomllib.load(handle)
    except FileNotFoundError:
        raise click.BadParameter(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as error:
        raise click.BadParameter(f"{path}: not valid TOML: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise click.BadParameter(f"{path}: cannot read it ({error})") from None
    options = {p.name: p for p in ctx.command.params if p.name not in ("config", "debug")}
    defaults = {}
    for key, raw in table.items():
        name = key.replace("-", "_")
        if name not in options:
            valid = ", ".join(n.replace("_", "-") for n in options)
            raise click.BadParameter(f"{path}: unknown key {key!r}; valid keys: {valid}")
        value = ",".join(str(v) for v in raw) if isinstance(raw, list) else raw
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = (
                str(value) if isinstance(options[name].type, click.types.StringParamType) else value
            )
        try:
            converted = options[name].type_cast_value(ctx, value)
            if options[name].callback is not None:
                options[name].callback(ctx, options[name], converted)
        except click.BadParameter as error:
            raise click.BadParameter(
                f"{path}: key {key!r} = {raw!r}: {error.format_message()}"
            ) from None
        defaults[name] = value
    ctx.default_map = {**(ctx.default_map or {}), **defaults}


def _config_option(function: Callable) -> Callable:
    return click.option(
        "--config",
        type=click.Path(dir_okay=False),
        callback=_config,
        is_eager=True,
        expose_value=False,
        help="A TOML file of options (keys as the option names, e.g. steps = 500); "
        "options given on the command line win.",
    )(function)


def _out_option(function: Callable) -> Callable:
    return click.option(
        "--out",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Run folder to write (default: runs/<command>-<date>-<time>).",
    )(function)


def _jobs_option(function: Callable) -> Callable:
    return click.option(
        "--jobs",
        "-j",
        type=click.IntRange(1),
        default=min(2, os.cpu_count() or 1),
        show_default=True,
        help="Worker processes for the runs (each uses one thread).",
    )(function)


def _device_option(function: Callable) -> Callable:
    return click.option(
        "--device", default="cpu", show_default=True, callback=_device, help="torch device."
    )(function)


def _lr_grid_options(function: Callable) -> Callable:
    function = click.option(
        "--refine/--no-refine",
        default=True,
        show_default=True,
        help="After the grid, also try halfway (in log scale) around each winner.",
    )(function)
    return click.option(
        "--lr-grid",
        default=",".join(f"{lr:g}" for lr in DEFAULT_LR_GRID),
        show_default=True,
        callback=_floats(),
        help="Learning rates the sweep tries for every optimizer without a fixed lr.",
    )(function)


# --- running, progress, run folders -------------------------------------------------------


@contextlib.contextmanager
def _progress() -> Iterator[Callable[[str, int], Callable[[], None]]]:
    """A rich progress bar on stderr (only on a terminal); yields the runner's callback."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = Console(stderr=True)
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=False,
    )

    def start(label: str, total: int) -> Callable[[], None]:
        task = bar.add_task(label, total=total)
        return lambda: bar.advance(task)

    with bar:
        yield start


def _folder(ctx: click.Context, out: Path | None, seed: int | None, options: dict[str, Any]):
    from .lab.rundir import RunFolder

    name = ctx.info_name or "run"
    if out is None:
        out = Path("runs") / f"{name}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    folder = RunFolder.create(
        out, ctx.obj["argv"], subcommand=name, seed=seed, options=_describe(options)
    )
    # If the command fails or is interrupted, run.json says so instead of "running".
    ctx.call_on_close(folder.abandon)
    return folder


def _describe(options: dict[str, Any]) -> dict[str, Any]:
    from .lab.contenders import Contender

    def plain(value: Any) -> Any:
        if isinstance(value, Contender):
            return value.name
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    return {k: plain(v) for k, v in options.items()}


def _publish(folder, document) -> None:
    """Write the report and summary (with how to reproduce the run), close the folder."""
    from .lab.report import write_html, write_markdown

    document.meta = folder.reproduce()
    write_html(document, folder.path)
    write_markdown(document, folder.path)
    folder.finish()
    click.echo(
        f"Report: {folder.path / 'report.html'} (and summary.md, figures/, metrics)", err=True
    )


# --- compare ------------------------------------------------------------------------------------


@main.command()
@_config_option
@click.option(
    "--optimizers",
    "-o",
    default=",".join(NOTES_CONTENDERS),
    show_default=True,
    callback=_contenders,
    help="Comma-separated names or specs (name:key=value,...; lr=... fixes the rate); "
    "'notes' is the default set, 'beyond' the optimizers beyond the notes, 'all' everything.",
)
@click.option(
    "--problems",
    default=",".join(DEFAULT_FUNCTIONS),
    show_default=True,
    callback=_names("test function", _functions, allow_none=True),
    help="Comma-separated 2-D test functions, or none.",
)
@click.option(
    "--datasets",
    default=",".join(DEFAULT_DATASETS),
    show_default=True,
    callback=_names("data set", _datasets, allow_none=True),
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
    callback=_batch_size,
    help="Mini-batch size on data sets ('full' for batch gradient descent).",
)
@click.option(
    "--hidden",
    default=64,
    show_default=True,
    type=click.IntRange(0),
    help="Hidden units of the MLP (0: logistic regression).",
)
@_lr_grid_options
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
@_out_option
@_device_option
@_jobs_option
@_debug_option
@click.pass_context
def compare(ctx: click.Context, **options: Any) -> None:
    """Compare optimizers fairly: tuned learning rates, several seeds, a report.

    Each optimizer's learning rate is chosen by a log-grid sweep on the validation split (the
    function value on test functions), then every seed runs at that rate. The run folder holds
    metrics (CSV, JSON), figures (PNG, SVG), report.html and summary.md.
    """
    from .lab.compare import CompareOptions, run_compare, write_compare

    if not options["problems"] and not options["datasets"]:
        raise click.UsageError("--problems none and --datasets none leave nothing to compare")
    folder = _folder(ctx, options["out"], options["seed"], options)
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
        lr_grid=options["lr_grid"],
        refine=options["refine"],
        target_accuracy=options["target_accuracy"],
        target_gap=options["target_gap"],
        device=options["device"],
        jobs=options["jobs"],
    )
    with _progress() as progress:
        result = run_compare(settings, progress)
    document = write_compare(result, folder)
    for verdict in result.verdicts:
        click.echo(verdict.sentence)
    _publish(folder, document)


# --- landscape ----------------------------------------------------------------------------------


@main.command()
@_config_option
@click.option(
    "--problems",
    default=None,
    callback=_names("test function", _functions),
    help="Comma-separated test functions (default: all of them).",
)
@click.option(
    "--optimizers",
    "-o",
    default=",".join(NOTES_CONTENDERS),
    show_default=True,
    callback=_contenders,
    help="Comma-separated names or specs (name:key=value,...; lr=... fixes the rate); "
    "'notes' is the default set, 'beyond' the optimizers beyond the notes, 'all' everything.",
)
@click.option("--steps", default=300, show_default=True, type=click.IntRange(1))
@_lr_grid_options
@click.option("--start", default=None, callback=_point, help="Start point x,y for every path.")
@click.option("--animate/--no-animate", default=False, help="Also write a GIF per function.")
@_out_option
@_device_option
@_jobs_option
@_debug_option
@click.pass_context
def landscape(ctx: click.Context, **options: Any) -> None:
    """Draw each optimizer's path over 2-D test functions with known minima.

    Learning rates are tuned per function (lowest final value) unless a spec fixes lr.
    """
    from .lab.landscape import LandscapeOptions, run_landscape, write_landscape

    folder = _folder(ctx, options["out"], 0, options)
    settings = LandscapeOptions(
        functions=options["problems"] or tuple(_functions()),
        contenders=options["optimizers"],
        steps=options["steps"],
        lr_grid=options["lr_grid"],
        refine=options["refine"],
        start=options["start"],
        animate=options["animate"],
        device=options["device"],
        jobs=options["jobs"],
    )
    with _progress() as progress:
        result = run_landscape(settings, progress)
    _publish(folder, write_landscape(result, folder))


# --- ewa ----------------------------------------------------------------------------------------


@main.command()
@click.option(
    "--betas", default="0.5,0.8,0.9,0.98", show_default=True, callback=_betas, help="Betas."
)
@click.option("--days", default=180, show_default=True, type=click.IntRange(2))
@click.option(
    "--day",
    default=20,
    show_default=True,
    type=click.IntRange(1),
    help="The day n whose weights beta^(n-i)(1-beta) are shown.",
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
@_out_option
@_debug_option
@click.pass_context
def ewa(ctx: click.Context, **options: Any) -> None:
    """Exponentially weighted averages of a noisy daily series, with and without bias correction."""
    from .lab.averages import EWAOptions, run_ewa, write_ewa

    if options["column"] is not None and options["csv_path"] is None:
        raise click.UsageError("--column needs --csv")
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
    folder = _folder(ctx, options["out"], options["seed"], options)
    _publish(folder, write_ewa(result, folder))


# --- schedule -----------------------------------------------------------------------------------


@main.command()
@click.argument("specs", nargs=-1, required=True)
@click.option("--steps", default=10000, show_default=True, type=click.IntRange(1))
@click.option(
    "--print", "print_values", is_flag=True, help="Print step,lr as CSV on standard output."
)
@click.option(
    "--every",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="With --print, print every k-th step.",
)
@click.option("--log/--linear", default=False, help="Logarithmic learning-rate axis.")
@_out_option
@_debug_option
@click.pass_context
def schedule(ctx: click.Context, specs: tuple[str, ...], **options: Any) -> None:
    """Plot learning-rate schedules, e.g. step_decay:lr=0.1,gamma=0.9,step_size=1000.

    `optimlab list schedules` shows every schedule; lists use /, e.g. boundaries=1000/2000.
    """
    from .lab.schedule_curves import parse_schedule, schedule_values, write_schedules

    for spec in specs:
        try:
            parse_schedule(spec)
        except (TypeError, ValueError) as error:
            raise click.BadParameter(str(error), param_hint="SPEC") from None
    values = schedule_values(specs, options["steps"])
    if options["print_values"]:
        # csv quotes the header: a spec's own commas would otherwise split it into columns.
        table = io.StringIO()
        writer = csv.writer(table, lineterminator="\n")
        writer.writerow(["step", *specs])
        for t in range(0, options["steps"], options["every"]):
            writer.writerow([t, *(repr(values[s][t]) for s in specs)])
        click.echo(table.getvalue(), nl=False)
    folder = _folder(ctx, options["out"], None, {"specs": specs, **options})
    _publish(folder, write_schedules(values, folder, options["log"]))


# --- batch-size ---------------------------------------------------------------------------------


@main.command("batch-size")
@_config_option
@click.option(
    "--dataset",
    default="digits",
    show_default=True,
    callback=lambda ctx, p, v: _names("data set", _datasets)(ctx, p, v)[0],
    help="The data set.",
)
@click.option(
    "--batch-sizes",
    default="1,16,128,full",
    show_default=True,
    callback=_batch_sizes,
    help="Comma-separated batch sizes; 'full' is all m training samples.",
)
@click.option("--epochs", default=5, show_default=True, type=click.IntRange(1))
@click.option(
    "--optimizer",
    "-o",
    default="sgd",
    show_default=True,
    callback=_contender,
    help="Name or spec of the optimizer.",
)
@click.option(
    "--lr",
    default="0.05",
    show_default=True,
    help="Learning rate for every batch size, or 'auto' to tune it per batch size.",
)
@_lr_grid_options
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--seeds", default=1, show_default=True, type=click.IntRange(1))
@click.option("--hidden", default=64, show_default=True, type=click.IntRange(0))
@_out_option
@_device_option
@_jobs_option
@_debug_option
@click.pass_context
def batch_size(ctx: click.Context, **options: Any) -> None:
    """Batch, stochastic and mini-batch gradient descent: time per epoch, loss per epoch/second."""
    from .lab.batch_size import BatchSizeOptions, run_batch_size, write_batch_size

    lr: float | None = None
    if options["lr"].strip() != "auto":
        try:
            lr = float(options["lr"])
        except ValueError:
            lr = math.nan
        if not math.isfinite(lr) or lr <= 0:
            raise click.BadParameter(
                f"expected a number > 0 or auto, got {options['lr']!r}", param_hint="'--lr'"
            )
    folder = _folder(ctx, options["out"], options["seed"], options)
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
    with _progress() as progress:
        result = run_batch_size(settings, progress)
    _publish(folder, write_batch_size(result, folder))


# --- list ---------------------------------------------------------------------------------------

LISTS = ("optimizers", "schedules", "problems", "datasets")


@main.command("build")
@_debug_option
def build() -> None:
    """Compile the fused path's kernels and C++ plan checks for this machine, once.

    Every optimizer's default configuration (and the notes' common variants), for float32 and
    float64, into the kernel cache; about 30 s the first time, a few seconds after. ``make run``
    and ``make test`` run it; a configuration not built ahead compiles in its first step.
    """
    from .fused.build import build as build_all

    build_all(lambda line: click.echo(f"optimlab build: {line}", err=True))


@main.command("list")
@click.argument("what", required=False, type=click.Choice([*LISTS, "all"]), default="all")
@_debug_option
def list_(what: str) -> None:
    """List the optimizers, schedules, problems and data sets, one line each."""
    import optimlab

    from .lab.contenders import CONTENDERS
    from .schedules import SCHEDULES

    def first_line(obj: Any) -> str:
        return (obj.__doc__ or "").strip().splitlines()[0].replace("``", "") if obj.__doc__ else ""

    sections = {
        "optimizers": [
            (
                c.name,
                f"{c.title}: {c.about}; {c.describe()}"
                + (" [compare default]" if c.name in NOTES_CONTENDERS else "")
                + (" [beyond the notes]" if c.name in optimlab.BEYOND_NOTES else ""),
            )
            for c in CONTENDERS.values()
        ]
        + [
            (
                name,
                f"{cls.__name__}: {first_line(cls)}"
                + (" [beyond the notes]" if name in optimlab.BEYOND_NOTES else ""),
            )
            for name, cls in optimlab.OPTIMIZERS.items()
            if name not in CONTENDERS
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


# ---------------------------------------------------------------------------------------------
# Subcommands owned by other parts of optimlab register here, so that this file stays one list
# of commands:
#
#   optimlab train --config run.toml   (issue 3; the training loop in optimlab.train)
#   optimlab escape ...                (issue 5; restarts, annealing and noise in optimlab.escape)
#
# e.g.   from .train.cli import train;   main.add_command(train)
# Their errors get the same one-line treatment by raising click.UsageError (exit 2) or any
# other exception (exit 1).
# ---------------------------------------------------------------------------------------------


from .benchmarks.cli import bench  # noqa: E402
from .escape.cli import escape  # noqa: E402  (these import this module's helpers lazily)
from .train.cli import train  # noqa: E402

main.add_command(train)
main.add_command(escape)
main.add_command(bench)

if __name__ == "__main__":
    main()
