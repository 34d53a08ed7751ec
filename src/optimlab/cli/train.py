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
    help="Continue the run folder in place, from its newest good checkpoint (a fresh start "
    "when it has none).",
)
@overwrite_option
@debug_option
@click.pass_context
def train(
    ctx: click.Context, config_path: Path, out: Path | None, resume: bool, overwrite: bool
) -> None:
    """Train a model as a run file describes, with checkpoints, --resume and a report.

    A run folder that holds files is continued with --resume, replaced by a new run once it
    has finished with --overwrite, and otherwise refused.

    See `optimlab.train.config` for the run file's tables and keys; data sets are the
    built-in ones (`optimlab list datasets` and synthetic_classification,
    synthetic_regression) or your own CSV, NPZ or IDX files.
    """
    from ..lab.rundir import LabError
    from ..train import Preempted, ResumeRefused
    from ..train.config import ConfigError, load_config, report, run

    try:
        config = load_config(config_path)
    except ConfigError as error:
        raise click.UsageError(str(error), ctx) from None
    if resume and overwrite:
        raise click.UsageError(
            "--resume continues the run folder, --overwrite starts a new run: choose one", ctx
        )
    out = out or Path(config.out or f"runs/train-{config_path.stem}")
    folder = run_folder(ctx, out, config.seed, {"config": str(config_path), "resume": resume},
                        keep=resume)  # fmt: skip
    try:
        result, metrics = run(config, folder.path, resume=resume or folder.staged)
    except ConfigError as error:
        raise LabError(str(error)) from None
    except ResumeRefused as error:  # the run file changed since the checkpoint: a user error
        raise click.UsageError(str(error), ctx) from None
    except (Preempted, KeyboardInterrupt):
        if folder.staged:  # --overwrite: the new run waits in its staging folder
            folder.suspend()
            click.echo(
                f"optimlab train: the new run is kept in {folder.path} and replaces {out}'s "
                f"run when it finishes: continue it with --resume --out {out}",
                err=True,
            )
        raise
    publish(folder, report(config, result, metrics, folder))
