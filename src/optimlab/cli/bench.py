"""``optimlab bench``: the benchmark suite (:mod:`optimlab.benchmarks`) as a subcommand."""

from __future__ import annotations

from pathlib import Path

import click

from .options import debug_option


def _counts(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    """``"1M,10M,50M"`` or ``"10,1000"`` -> a list of ints (suffixes k and M allowed)."""
    if value is None:
        return None
    out = []
    for item in value.split(","):
        text = item.strip()
        scale = {"k": 1_000, "K": 1_000, "M": 1_000_000}.get(text[-1:], 1)
        number = text[:-1] if scale != 1 else text
        try:
            count = int(float(number) * scale)
        except ValueError:
            raise click.BadParameter(f"{item!r} is not a count (e.g. 1M,10M or 10,1000)") from None
        if count < 1:
            raise click.BadParameter(f"{item!r}: expected a positive count")
        out.append(count)
    return out


def _names(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


@click.command(
    "bench",
    help="Benchmark optimizer steps (every optimlab and torch.optim path against the "
    "memory-bandwidth bound), mini-batch plans against DataLoader, and the training loop "
    "against a hand-written loop, the playground's answer times and the commands' own; write "
    "BENCHMARKS.md, a plot and every measured row as JSON. The full run took about 12 minutes "
    "on 2 cores, --quick 1.4 (each BENCHMARKS.md says how long its own run took).",
)
@click.option(
    "--quick",
    is_flag=True,
    help="A fast subset: 4 variants, 1M and 10M parameters, fewer rounds and repeats; writes "
    "benchmarks/quick/BENCHMARKS.md unless --out is given.",
)
@click.option("--smoke", is_flag=True, hidden=True, help="Tiny sizes, for tests.")
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="Where parameters live; on cuda the bound is the GPU's measured bandwidth, the sizes "
    "100M parameters in 200 and 2,000 tensors, and the report goes to benchmarks/cuda/.",
)
@click.option(
    "--sizes",
    callback=_counts,
    help="Total fp32 parameters per cell (default 1M,10M,50M; cuda 100M).",
)
@click.option(
    "--layouts", callback=_counts, help="Tensor counts per cell (default 10,1000; cuda 200,2000)."
)
@click.option("--variants", callback=_names, help="Comma-separated variant ids (default: all).")
@click.option("--rounds", type=click.IntRange(min=1), help="Rounds per cell (default 7; quick 4).")
@click.option("--no-steps", is_flag=True, help="Skip the optimizer steps.")
@click.option(
    "--steps-from",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Report the optimizer-step rows of an earlier run's results.json instead of measuring "
    "them again (the report says so).",
)
@click.option("--no-plans", is_flag=True, help="Skip the mini-batch plans.")
@click.option("--no-train", is_flag=True, help="Skip the training loop.")
@click.option("--no-playground", is_flag=True, help="Skip the playground's answer times.")
@click.option(
    "--no-commands",
    is_flag=True,
    help="Skip the command times (--help, list; optimlab build into an empty cache in a full run).",
)
@click.option(
    "--no-mixed", is_flag=True, help="Skip mixed precision (bfloat16 parameters, float32 state)."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The report (default ./BENCHMARKS.md; --quick ./benchmarks/quick/BENCHMARKS.md; cuda "
    "./benchmarks/cuda/ and ./benchmarks/cuda/quick/).",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The plot (default: optimizer_steps.png in ./benchmarks/, or the folder of the "
    "report's default: --quick, cuda).",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Every measured row (default: results.json beside the plot's default).",
)
@debug_option
@click.pass_context
def bench(
    ctx: click.Context,
    quick: bool,
    smoke: bool,
    device: str,
    sizes: list[int] | None,
    layouts: list[int] | None,
    variants: list[str] | None,
    rounds: int | None,
    no_steps: bool,
    steps_from: Path | None,
    no_plans: bool,
    no_train: bool,
    no_playground: bool,
    no_commands: bool,
    no_mixed: bool,
    out: Path | None,
    plot: Path | None,
    json_path: Path | None,
) -> int:
    from ..benchmarks.suite import BenchError, Options, run

    obj = ctx.obj if isinstance(ctx.obj, dict) else {}
    argv = obj.get("argv")
    command = (
        f"{obj.get('prog', 'optimlab')} {' '.join(argv)}".strip()
        if argv is not None
        else ctx.command_path
    )
    options = Options(
        quick=quick,
        smoke=smoke,
        device=device,
        sizes=sizes,
        layouts=layouts,
        variants=variants,
        rounds=rounds,
        steps=not no_steps,
        steps_from=steps_from,
        plans=not no_plans,
        train=not no_train,
        playground=not no_playground,
        commands=not no_commands,
        mixed=not no_mixed,
        out=out,
        plot=plot,
        json=json_path,
        command=command,
        progress=click.echo,
    )
    try:
        return run(options)
    except BenchError as error:
        raise click.UsageError(str(error), ctx) from None
