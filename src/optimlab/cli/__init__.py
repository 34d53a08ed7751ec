"""The ``optimlab`` command: the group, its one-line errors, one module per family of subcommands.

    optimlab compare                      the main job: every optimizer of the notes, tuned
                                          fairly, on test functions and handwritten digits
    optimlab landscape                    paths over the 2-D test functions (optionally a GIF)
    optimlab ewa                          exponentially weighted averages of a daily series
    optimlab schedule SPEC...             learning-rate schedules over the steps
    optimlab batch-size                   batch, stochastic and mini-batch gradient descent
    optimlab train --config run.toml      one training run from a run file (optimlab.train)
    optimlab escape                       restarts, annealing and noise on saddles and minima
    optimlab playground                   the notes' ideas in the browser, computed by optimlab
    optimlab bench                        the benchmark suite, which writes BENCHMARKS.md
    optimlab build                        the fused path's kernels, compiled ahead
    optimlab list [WHAT]                  optimizers, schedules, problems and data sets

The modules: :mod:`.lab` (compare, landscape, ewa, schedule, batch-size), :mod:`.train`,
:mod:`.escape`, :mod:`.bench`, :mod:`.tools` (build), :mod:`.listing` (list), and
:mod:`.options`, what they share (options, parsers of option values, the progress bar, run
folders). They import from
:mod:`.options` and the library, never from this module, which only gathers them.

Every command that computes writes a run folder (``--out``; by default ``runs/<command>-<time>``)
holding ``run.json`` (the exact command, the seed, the versions, the files it wrote), the metrics
as CSV and JSON, the figures as PNG and SVG, ``report.html`` and ``summary.md``. No folder is
deleted: a ``--out`` folder that holds anything is refused (exit 2) unless ``--overwrite`` (the
new run replaces the previous run's files once it has finished) or ``train --resume``.

Errors: a usage error (unknown name, bad option value, malformed spec or config) prints one
line and exits with 2; any other failure prints one line and exits with 1; ``--debug`` (before
or after the subcommand) adds the traceback. A subcommand gets the same treatment by raising
:class:`click.UsageError` (exit 2) or any other exception (exit 1).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import threading
import traceback
import warnings
from typing import Any

import click

__all__ = ["SUBCOMMANDS", "main"]

#: Every subcommand: the module of ``optimlab.cli`` and the function that define it, and the
#: first sentence of its help, which ``optimlab --help`` lists without importing the module
#: (the modules import torch: seconds; the list answers in a fraction of one). A test checks
#: each sentence against the command's own docstring.
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "batch-size": (
        "lab",
        "batch_size",
        "Batch, stochastic and mini-batch gradient descent: time per epoch, loss per epoch/second.",
    ),
    "bench": (
        "bench",
        "bench",
        "Benchmark optimizer steps (every optimlab and torch.optim path against the "
        "memory-bandwidth bound), mini-batch plans against DataLoader, and the training loop "
        "against a hand-written loop, the playground's answer times and the commands' own; "
        "write BENCHMARKS.md, a plot and every measured row as JSON.",
    ),
    "build": (
        "tools",
        "build",
        "Compile the fused path's kernels and C++ plan checks for this machine, once.",
    ),
    "compare": (
        "lab",
        "compare",
        "Compare optimizers fairly: tuned learning rates, several seeds, a report.",
    ),
    "escape": (
        "escape",
        "escape",
        "Gradient noise, random restarts and simulated annealing on saddles and many minima.",
    ),
    "ewa": (
        "lab",
        "ewa",
        "Exponentially weighted averages of a noisy daily series, with and without bias "
        "correction.",
    ),
    "landscape": (
        "lab",
        "landscape",
        "Draw each optimizer's path over 2-D test functions with known minima.",
    ),
    "list": (
        "listing",
        "list_",
        "List the optimizers, schedules, problems and data sets, and escape's problems, methods "
        "and remedies, one line each.",
    ),
    "playground": (
        "playground",
        "playground",
        "Explore the notes in the browser, computed by optimlab's own optimizers.",
    ),
    "schedule": (
        "lab",
        "schedule",
        "Plot learning-rate schedules, e.g. step_decay:lr=0.1,gamma=0.9,step_size=1000.",
    ),
    "train": (
        "train",
        "train",
        "Train a model as a run file describes, with checkpoints, --resume and a report.",
    ),
}

# --- error handling: one line, exit 2 for usage errors and 1 for failures ---------------------


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as the command's user reads it: one line, without the source line that raised
    it (``--debug`` shows Python's own form, with the file and line)."""
    kind = "Warning" if category is UserWarning else category.__name__
    click.echo(f"{kind}: {_one_line(str(message))}", err=True)


class Terminated(SystemExit):
    """SIGTERM (``kill``, a job scheduler, a cancelled CI job) asked the command to stop: raised
    in the main thread as Ctrl-C's KeyboardInterrupt is, so that the run folder says
    "interrupted" and worker processes are stopped, not orphaned; exit status 143."""


def _terminate(number: int, frame: Any) -> None:
    raise Terminated(128 + number)


@contextlib.contextmanager
def _sigterm_raises() -> Any:
    """SIGTERM raises :class:`Terminated` while the command runs (where no one else handles it:
    a caller's own handler stays; ``fit`` sets its own, to save a checkpoint first)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class LabGroup(click.Group):
    """A click group whose errors are one line on stderr (tracebacks only with ``--debug``),
    and whose subcommands (:data:`SUBCOMMANDS`) are imported only when one is run."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*SUBCOMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in SUBCOMMANDS and name not in self.commands:
            module, function, _ = SUBCOMMANDS[name]
            command = getattr(importlib.import_module(f"{__name__}.{module}"), function)
            self.add_command(command, name)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows = [
            (name, click.Command(name, help=SUBCOMMANDS[name][2]).get_short_help_str(limit))
            if name in SUBCOMMANDS
            else (name, self.commands[name].get_short_help_str(limit))
            for name in names
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

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
            with warnings.catch_warnings(), _sigterm_raises():  # (both restored for callers)
                if not debug:
                    warnings.showwarning = _show_warning
                code = super().main(args, prog_name or "optimlab", complete_var, False, **extra)
        except click.UsageError as error:
            where = error.ctx.command_path if error.ctx else "optimlab"
            self._fail(f"{_one_line(error.format_message())} (see '{where} --help')", 2, debug)
        except click.ClickException as error:
            self._fail(_one_line(error.format_message()), error.exit_code, debug)
        except (click.Abort, KeyboardInterrupt):
            self._fail("interrupted", 130, debug)
        except Terminated as stopped:
            self._fail("terminated (SIGTERM)", stopped.code, debug)
        except Exception as error:  # the one place every other failure becomes one line
            from ..lab.rundir import LabError

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


@click.group("optimlab", cls=LabGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show the full traceback on failure.")
@click.version_option(package_name="optimlab", prog_name="optimlab")
def main(debug: bool) -> None:
    """optimlab: compare the optimizers of the notes on your machine, fairly, with figures.

    Start with `optimlab compare` (what `make run` runs); `optimlab list` shows the names
    that the options accept.
    """
