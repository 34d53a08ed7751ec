"""What the subcommands share: options, parsers of option values, the progress bar, run folders.

Every subcommand module imports from here (and from the library), never from the group in
:mod:`optimlab.cli`, so the command's modules form no import cycle.

Option callbacks raise :class:`click.BadParameter`, which the group turns into one line and
exit status 2.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

__all__ = [
    "batch_sizes",
    "betas",
    "config_option",
    "contender",
    "contenders",
    "datasets",
    "debug_option",
    "device_option",
    "floats",
    "functions",
    "jobs_option",
    "lr_grid_options",
    "names",
    "out_option",
    "overwrite_option",
    "point",
    "progress",
    "publish",
    "run_folder",
    "single_batch_size",
]

# --- parsers of option values -------------------------------------------------------------------


def names(kind: str, valid: Callable[[], list[str]], allow_none: bool = False):
    """A callback that splits a comma-separated list and checks every name against ``valid``."""

    def callback(ctx: click.Context, param: click.Parameter, text: str | None) -> tuple[str, ...]:
        if text is None:
            return ()
        chosen = [n.strip() for n in text.split(",") if n.strip()]
        if allow_none and chosen == ["none"]:
            return ()
        known = valid()
        for name in chosen:
            if name not in known:
                raise click.BadParameter(
                    f"unknown {kind} {name!r}; valid names: {', '.join(known)}"
                    + (", or none" if allow_none else "")
                )
        if not chosen:
            raise click.BadParameter(f"expected at least one {kind} name")
        return tuple(dict.fromkeys(chosen))

    return callback


def functions() -> list[str]:
    """The names of the lab's 2-D test functions."""
    from ..lab.functions import FUNCTIONS

    return list(FUNCTIONS)


def datasets() -> list[str]:
    """The names of the lab's data sets."""
    from ..lab.datasets import DATASETS

    return list(DATASETS)


def contenders(ctx: click.Context, param: click.Parameter, text: str) -> tuple:
    from ..lab.contenders import parse_contender_list

    try:
        return tuple(parse_contender_list(text))
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def contender(ctx: click.Context, param: click.Parameter, text: str):
    from ..lab.contenders import parse_contender

    try:
        return parse_contender(text)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def floats(positive: bool = True):
    """A callback that reads comma-separated finite numbers (all > 0 when ``positive``)."""

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


def betas(ctx: click.Context, param: click.Parameter, text: str) -> tuple[float, ...]:
    values = floats(positive=False)(ctx, param, text)
    for beta in values:
        if not 0 <= beta < 1:
            raise click.BadParameter(f"beta must be in [0, 1), got {beta:g}")
    return values


def batch_sizes(ctx: click.Context, param: click.Parameter, text: str) -> tuple:
    """Comma-separated batch sizes; ``full`` (or ``m``, ``all``) is None, all the samples."""
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


def single_batch_size(ctx: click.Context, param: click.Parameter, text: str) -> int | None:
    """One batch size, as :func:`batch_sizes` reads it."""
    sizes = batch_sizes(ctx, param, text)
    if len(sizes) != 1:
        raise click.BadParameter(f"expected one batch size, got {text!r}")
    return sizes[0]


def point(ctx: click.Context, param: click.Parameter, text: str | None):
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


# --- --config: a TOML file of option defaults ---------------------------------------------------


def _read_toml(path: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise click.BadParameter(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as error:
        raise click.BadParameter(f"{path}: not valid TOML: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise click.BadParameter(f"{path}: cannot read it ({error})") from None


def _config(ctx: click.Context, param: click.Parameter, path: str | None) -> None:
    """Read a TOML file whose keys are this command's options: they become its defaults."""
    if path is None:
        return
    table = _read_toml(path)
    options = {p.name: p for p in ctx.command.params if p.name not in ("config", "debug")}
    defaults = {}
    for key, raw in table.items():
        name = key.replace("-", "_")
        if name not in options:
            valid = ", ".join(n.replace("_", "-") for n in options)
            raise click.BadParameter(f"{path}: unknown key {key!r}; valid keys: {valid}")
        # as the command line would give it (text), so that the option's own parsing decides:
        # `seeds = 2.5` or `seeds = true` is refused as --seeds 2.5 is, not cut to 2 or 1
        value = ",".join(str(v) for v in raw) if isinstance(raw, list) else str(raw)
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


# --- options that several subcommands take ------------------------------------------------------


def debug_option(function: Callable) -> Callable:
    # Accepted after the subcommand too; the group has already looked for it in the arguments.
    return click.option(
        "--debug", is_flag=True, expose_value=False, help="Show the full traceback on failure."
    )(function)


def config_option(function: Callable) -> Callable:
    return click.option(
        "--config",
        type=click.Path(dir_okay=False),
        callback=_config,
        is_eager=True,
        expose_value=False,
        help="A TOML file of options (keys as the option names, e.g. steps = 500); "
        "options given on the command line win.",
    )(function)


def out_option(
    function: Callable | None = None,
    *,
    help: str = "Run folder to write (default: runs/<command>-<date>-<time>).",
) -> Callable:
    """``--out``, the run folder: ``@out_option``, or ``@out_option(help=...)``."""

    def decorate(command: Callable) -> Callable:
        path = click.Path(file_okay=False, path_type=Path)
        return click.option("--out", type=path, default=None, help=help)(command)

    return decorate if function is None else decorate(function)


def overwrite_option(function: Callable) -> Callable:
    """``--overwrite``: rerun into a folder that holds files (every command with ``--out``)."""
    return click.option(
        "--overwrite",
        is_flag=True,
        help="Run into a --out folder that holds files: the new run's files replace the "
        "previous run's once it has finished (until then, and if it is interrupted, the "
        "previous run stays as it was); files that are not a run's are kept.",
    )(function)


def jobs_option(
    function: Callable | None = None,
    *,
    help: str = "Worker processes for the runs (each uses one thread).",
) -> Callable:
    """``--jobs``/``-j``, worker processes: ``@jobs_option``, or ``@jobs_option(help=...)``."""

    def decorate(command: Callable) -> Callable:
        return click.option(
            "--jobs",
            "-j",
            type=click.IntRange(1),
            default=min(2, os.cpu_count() or 1),
            show_default=True,
            help=help,
        )(command)

    return decorate if function is None else decorate(function)


def device_option(function: Callable) -> Callable:
    return click.option(
        "--device", default="cpu", show_default=True, callback=_device, help="torch device."
    )(function)


def lr_grid_options(function: Callable) -> Callable:
    from ..lab.runner import DEFAULT_LR_GRID

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
        callback=floats(),
        help="Learning rates the sweep tries for every optimizer without a fixed lr.",
    )(function)


# --- running, progress, run folders -------------------------------------------------------------


@contextlib.contextmanager
def progress() -> Iterator[Callable[[str, int], Callable[[], None]]]:
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


def run_folder(
    ctx: click.Context,
    out: Path | None,
    seed: int | None,
    options: dict[str, Any],
    keep: bool = False,
):
    """The subcommand's :class:`~optimlab.lab.rundir.RunFolder` (default runs/<command>-<time>).

    A ``--out`` folder that holds anything is refused (a usage error, exit 2) unless the
    command was given ``--overwrite`` or ``keep`` (``optimlab train --resume``) is set; nothing
    in it is deleted either way. If the command fails or is interrupted, its ``run.json`` says
    so instead of "running" (with ``--overwrite``, the previous run's files stay as they were).
    """
    from ..lab.rundir import FolderInUse, RunFolder

    name = ctx.info_name or "run"
    if out is None:
        out = _new_folder(Path("runs"), f"{name}-{_dt.datetime.now():%Y%m%d-%H%M%S}")
    try:
        folder = RunFolder.create(
            out, ctx.obj["argv"], subcommand=name, seed=seed, options=_describe(options),
            overwrite=bool(ctx.params.get("overwrite")), keep=keep,
        )  # fmt: skip
    except FolderInUse:
        choices = (
            "choose another --out, pass --resume to continue its run, or --overwrite"
            if "resume" in ctx.params
            else "choose another --out, or pass --overwrite"
        )
        raise click.UsageError(
            f"--out {out} is not empty: {choices} to replace its run's files once the new run "
            "has finished (other files are kept)",
            ctx,
        ) from None
    ctx.call_on_close(folder.abandon)
    return folder


def _new_folder(parent: Path, stem: str) -> Path:
    """A folder ``parent/stem`` made now, or ``stem-2``, ``stem-3``... if that one exists."""
    n = 1
    while True:
        path = parent / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            n += 1
            continue
        except OSError:
            pass  # RunFolder.create says what is wrong with it
        return path


def _describe(options: dict[str, Any]) -> dict[str, Any]:
    from ..lab.contenders import Contender

    def plain(value: Any) -> Any:
        if isinstance(value, Contender):
            return value.name
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    return {k: plain(v) for k, v in options.items()}


def publish(folder, document) -> None:
    """Have the run folder publish its report and close, and say where the report is."""
    report = folder.publish(document)
    click.echo(f"Report: {report} (and summary.md, figures/, metrics)", err=True)
