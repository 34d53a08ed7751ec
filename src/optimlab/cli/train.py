"""``optimlab train --config run.toml``: one training run from a run file, with a report."""

from __future__ import annotations

from pathlib import Path

import click

from .options import debug_option, out_option, overwrite_option, publish, run_folder


@click.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(path_type=Path),
    help="The run file (TOML): data, model, optimizer, schedule, training.",
)
@out_option(help="Run folder (default: the run file's `out`, else runs/train-<name>).")
@click.option(
    "--resume/--no-resume",
    default=False,
    help="Continue the run folder's run, with the run file it started with, from its newest "
    "good checkpoint (a fresh start when it has none).",
)
@overwrite_option
@debug_option
@click.pass_context
def train(
    ctx: click.Context, config_path: Path, out: Path | None, resume: bool, overwrite: bool
) -> None:
    """Train a model as a run file describes, with checkpoints, --resume and a report.

    A run folder that holds files is continued with --resume, replaced by a new run once it
    has finished with --overwrite, and otherwise refused. --resume continues the run an
    --overwrite started, if that was stopped or killed before it finished; it refuses a run
    file that differs from the one the run started with.

    See `optimlab.train.config` for the run file's tables and keys; data sets are the
    built-in ones (`optimlab list datasets` and synthetic_classification,
    synthetic_regression) or your own CSV, NPZ or IDX files.
    """
    from ..train import config as runfile
    from ..train.config import ConfigError

    try:
        config = runfile.load_config(config_path)
    except ConfigError as error:
        raise click.UsageError(str(error), ctx) from None
    if resume and overwrite:
        raise click.UsageError(
            "--resume continues the run folder, --overwrite starts a new run: choose one", ctx
        )
    out = out or Path(config.out or f"runs/train-{config_path.stem}")
    if resume:
        _check_same_run_file(ctx, config, config_path, out)
    data = _checked_data(ctx, config)
    options = {"config": str(config_path), "resume": resume, "run_file": runfile.settings(config)}
    folder = run_folder(ctx, out, config.seed, options, keep=resume)
    for staging in folder.removed:
        click.echo(
            f"optimlab train: removed {staging}, the staging folder of a run whose process "
            "ended before it finished",
            err=True,
        )
    result, metrics = _run(ctx, config, folder, out, data, resume=resume)
    publish(folder, runfile.report(config, result, metrics, folder))


def _checked_data(ctx: click.Context, config):
    """The run file's data, and what the run file asks of it checked, before the run folder
    is touched: a mistake leaves nothing to clean up, and the same command runs once fixed."""
    from ..lab.rundir import LabError
    from ..train.config import ConfigError, check_with_data, load_data

    try:
        data = load_data(config.data_files, config.seed)
    except ConfigError as error:  # a data file that cannot be read: a failure (exit 1)
        raise LabError(str(error)) from None
    try:
        check_with_data(config, data)
    except ConfigError as error:
        raise click.UsageError(str(error), ctx) from None
    return data


def _run(ctx: click.Context, config, folder, out: Path, data, resume: bool):
    """Train into ``folder``; a stopped ``--overwrite`` run is kept to be resumed."""
    from ..lab.rundir import LabError
    from ..train import Preempted, ResumeRefused
    from ..train import config as runfile

    try:
        return runfile.run(config, folder.path, resume=resume or folder.staged, data=data,
                           run_id=folder.record["run_id"])  # fmt: skip
    except runfile.ConfigError as error:
        raise LabError(str(error)) from None
    except ResumeRefused as error:  # the checkpoint is another run's: a user error
        raise click.UsageError(f"{error.reason} {_START_ANEW.format(out=out)}", ctx) from None
    except (Preempted, KeyboardInterrupt):
        if folder.staged:  # --overwrite: the new run waits in its staging folder
            folder.suspend()
            click.echo(
                f"optimlab train: the new run is kept in {folder.path} and replaces {out}'s "
                f"run when it finishes: continue it with --resume --out {out}",
                err=True,
            )
        raise


_START_ANEW = (
    "Resume with the run file the run started with, or start a new run with --overwrite "
    "(it replaces {out}'s run once it finishes) or in another --out."
)


def _check_same_run_file(ctx: click.Context, config, config_path: Path, out: Path) -> None:
    """Refuse (exit 2) to resume a run with a run file that differs from the one it started
    with, naming every difference: the checkpoint would go on under other settings, a new
    seed would even re-split the data. A run that recorded no run file (an older optimlab)
    is checked only by ``fit``, against its checkpoint's optimizer."""
    from ..lab.rundir import RunFolder
    from ..train.config import run_file_changes

    record = RunFolder.continued(out)
    saved = (record or {}).get("options", {}).get("run_file")
    if record and record.get("staged"):
        click.echo(
            f"optimlab train: continuing the new run that --overwrite started in {out} (its "
            "process ended before it finished); it replaces the run there when it finishes",
            err=True,
        )
    if not isinstance(saved, dict):
        return
    changes = run_file_changes(saved, config)
    if changes:
        raise click.UsageError(
            f"--resume: {config_path} differs from the run file the run in {out} started with "
            f"({'; '.join(changes)}): resuming would mix two runs. " + _START_ANEW.format(out=out),
            ctx,
        )
