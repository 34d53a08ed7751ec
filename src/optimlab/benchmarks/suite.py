"""The benchmark suite: run every part, then write the report, the plot and the raw rows."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import (
    bench_commands,
    bench_mixed,
    bench_optimizers,
    bench_plans,
    bench_playground,
    bench_train,
    report,
)

FULL_SIZES = [1_000_000, 10_000_000, 50_000_000]
QUICK_SIZES = [1_000_000, 10_000_000]
LAYOUTS = [10, 1000]
# --device cuda: a model of 100M parameters in 200 and in 2,000 tensors (quick: 10M in 200)
CUDA_SIZES, CUDA_LAYOUTS = [100_000_000], [200, 2000]
CUDA_QUICK_SIZES, CUDA_QUICK_LAYOUTS = [10_000_000], [200]
# --smoke: every part on tiny sizes, to check that the suite runs (figures mean nothing).
SMOKE_SIZES = [20_000]
SMOKE_LAYOUTS = [4]
SMOKE_VARIANTS = ["adam"]


class BenchError(ValueError):
    """A bad option (unknown variant, no such device): the command exits with 2."""


@dataclass
class Options:
    quick: bool = False
    smoke: bool = False
    device: str = "cpu"
    sizes: list[int] | None = None
    layouts: list[int] | None = None
    variants: list[str] | None = None
    rounds: int | None = None
    steps: bool = True
    #: a results.json of an earlier run whose optimizer-step rows are reported instead of
    #: measuring them again (the report says so, with that run's date)
    steps_from: Path | None = None
    plans: bool = True
    train: bool = True
    playground: bool = True
    commands: bool = True
    mixed: bool = True
    out: Path | None = None
    plot: Path | None = None
    json: Path | None = None
    command: str = "optimlab bench"
    progress: Callable[[str], None] = field(default=print)

    def resolve(self) -> None:
        """Default paths, relative to the working directory: BENCHMARKS.md and, beside it in
        ``benchmarks/``, the plot and every measured row as JSON. A quick or smoke run writes
        into ``benchmarks/quick/`` (or ``benchmarks/smoke/``) and never overwrites the full
        report; a GPU's run, into ``benchmarks/cuda/`` (and its ``quick/``), beside the CPU's."""
        sub = "smoke" if self.smoke else "quick" if self.quick else ""
        folder = Path("benchmarks") / ("" if self.device == "cpu" else self.device) / sub
        top = sub or self.device != "cpu"
        self.out = self.out or (folder / "BENCHMARKS.md" if top else Path("BENCHMARKS.md"))
        self.plot = self.plot or folder / "optimizer_steps.png"
        self.json = self.json or folder / "results.json"


def _variants(options: Options) -> list:
    """The variants asked for by name (smoke: Adam only), the quick ones, or all of them."""
    variants = bench_optimizers.VARIANTS
    wanted = options.variants or (SMOKE_VARIANTS if options.smoke else None)
    if wanted:
        known = [v.id for v in variants]
        unknown = sorted(set(wanted) - set(known))
        if unknown:
            raise BenchError(f"Invalid --variants: unknown {unknown}; known: {known}")
        return [v for v in variants if v.id in wanted]
    if options.quick:
        return [v for v in variants if v.quick]
    return variants


def _sizes_layouts_rounds(options: Options) -> tuple[list[int], list[int], int]:
    """The options' own sizes, layouts and rounds, else those of a smoke, quick or full run."""
    if options.smoke:
        sizes, layouts, rounds = SMOKE_SIZES, SMOKE_LAYOUTS, 1
    elif options.device == "cuda":
        sizes, layouts = (
            (CUDA_QUICK_SIZES, CUDA_QUICK_LAYOUTS) if options.quick else (CUDA_SIZES, CUDA_LAYOUTS)
        )
        rounds = 4 if options.quick else 7
    else:
        sizes = QUICK_SIZES if options.quick else FULL_SIZES
        layouts, rounds = LAYOUTS, 4 if options.quick else 7
    sizes = options.sizes or sizes
    layouts = options.layouts or layouts
    rounds = options.rounds or rounds
    for value, name in ((sizes, "--sizes"), (layouts, "--layouts")):
        if any(v < 1 for v in value):
            raise BenchError(f"Invalid {name}: {value}; expected positive counts")
    if any(s < t for s in sizes for t in layouts):
        raise BenchError(f"Invalid --sizes {sizes} for --layouts {layouts}: a size below a layout")
    return sizes, layouts, rounds


def _reused_steps(steps_from: Path) -> tuple[list[dict], tuple[str, str]]:
    """The optimizer-step rows of an earlier results.json, and (its path, when it measured)."""
    try:
        earlier = json.loads(Path(steps_from).read_text())
        rows = list(earlier["steps"])
        when = earlier.get("steps_measured") or earlier["machine"]["date"]
        return rows, (str(steps_from), when)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise BenchError(
            f"Invalid --steps-from: {str(steps_from)!r} is not a results.json of "
            f"optimlab bench ({error})"
        ) from None


def _step_rows(
    options: Options, variants, sizes: list[int], layouts: list[int], rounds: int
) -> tuple[list[dict], tuple[str, str] | None]:
    """The optimizer-step rows, reused or measured now (none if not asked), and where from."""
    say = options.progress
    if options.steps_from is not None:
        rows, reused = _reused_steps(options.steps_from)
        say(f"optimizer steps: {len(rows)} rows from {reused[0]} (measured {reused[1]})")
        return rows, reused
    if not options.steps:
        return [], None
    say(
        f"optimizer steps on {options.device}: {len(variants)} variants, sizes {sizes}, "
        f"layouts {layouts}, {rounds} rounds"
    )
    rows = bench_optimizers.run(
        sizes,
        layouts,
        variants,
        rounds=rounds,
        slow_rounds=min(rounds, 3),
        device=options.device,
        progress=say,
        retries=0 if options.smoke else 2,
        bound_elements=1_000_000 if options.smoke else bench_optimizers.BOUND_ELEMENTS,
        all_paths=options.smoke,
    )
    return rows, None


def _repeats(options: Options) -> int:
    """Repeats of the plans and the training loop: 1 smoke, 3 quick, 7 full."""
    return 1 if options.smoke else 3 if options.quick else 7


def _plan_rows(options: Options) -> list[dict]:
    if not options.plans:
        return []
    options.progress("mini-batch plans vs DataLoader")
    return bench_plans.run(
        _repeats(options),
        samples=2_048 if options.smoke else bench_plans.M,
        features=16 if options.smoke else bench_plans.FEATURES,
        progress=options.progress,
        device=options.device,
    )


def _train_rows(options: Options) -> list[dict]:
    if not options.train:
        return []
    options.progress("the training loop vs a hand-written loop")
    return bench_train.run(
        _repeats(options),
        cases=bench_train.SMOKE_CASES if options.smoke else bench_train.CASES,
        progress=options.progress,
        device=options.device,
    )


def _playground_rows(options: Options) -> list[dict]:
    """The playground's answer times (none without its extra, or on another device)."""
    if not options.playground or options.device != "cpu":
        return []
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        options.progress("playground: skipped (pip install 'optimlab[playground]')")
        return []
    return bench_playground.run(
        3 if options.smoke else 11 if options.quick else 31, options.progress
    )


def _command_rows(options: Options) -> list[dict]:
    """The command line's promised times (``optimlab build`` into an empty cache only in a
    full run: it compiles for about half a minute)."""
    if not options.commands or options.device != "cpu":
        return []
    full = not (options.smoke or options.quick)
    return bench_commands.run(7 if full else 2, build=full, progress=options.progress)


def _mixed_rows(options: Options) -> list[dict]:
    """bfloat16 parameters with float32 state, fused and plain (the C kernels: the CPU)."""
    if not options.mixed or options.device != "cpu":
        return []
    if options.smoke:
        return bench_mixed.run(1, 20_000, (4,), 1, options.progress, 1_000_000)
    return bench_mixed.run(3 if options.quick else 7, progress=options.progress)


def _plot(options: Options, rows: list[dict]) -> str | None:
    """Draw the plot of the step rows; its path as BENCHMARKS.md links it (None if not drawn)."""
    if not (rows and report.plot(rows, options.plot)):
        return None
    try:
        return str(options.plot.resolve().relative_to(options.out.resolve().parent))
    except ValueError:
        return str(options.plot.resolve())


def _write_results(
    options: Options,
    rows: list[dict],
    plan_rows: list[dict],
    train_rows: list[dict],
    info: dict[str, str],
    reused: tuple[str, str] | None,
    playground_rows: list[dict],
    command_rows: list[dict],
    mixed_rows: list[dict],
) -> None:
    """Every measured row, with the machine and when the step rows were measured, as JSON."""
    results = {
        "machine": info,
        "steps_measured": reused[1] if reused else info["date"],
        "steps": rows,
        "plans": plan_rows,
        "train": train_rows,
        "playground": playground_rows,
        "commands": command_rows,
        "mixed": mixed_rows,
    }
    options.json.write_text(json.dumps(results, indent=1) + "\n")


def run(options: Options) -> int:
    """Run the benchmarks ``options`` ask for and write the report; returns the exit status."""
    say = options.progress
    options.resolve()
    if options.device == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda: no CUDA device here")
    if options.device not in ("cpu", "cuda"):
        raise BenchError(f"Invalid --device: {options.device!r}; expected 'cpu' or 'cuda'")
    variants = _variants(options)
    sizes, layouts, rounds = _sizes_layouts_rounds(options)

    start = time.perf_counter()
    for path in (options.out, options.plot, options.json):
        path.parent.mkdir(parents=True, exist_ok=True)
    rows, reused = _step_rows(options, variants, sizes, layouts, rounds)
    plan_rows = _plan_rows(options)
    train_rows = _train_rows(options)
    playground_rows = _playground_rows(options)
    command_rows = _command_rows(options)
    mixed_rows = _mixed_rows(options)
    info = report.machine(options.device)
    plot_ref = _plot(options, rows)
    elapsed = time.perf_counter() - start
    options.out.write_text(
        report.markdown(
            rows,
            plan_rows,
            train_rows,
            info,
            options.command,
            plot_ref,
            elapsed,
            options.smoke,
            reused,
            playground_rows,
            command_rows,
            mixed_rows,
        )
    )
    _write_results(
        options,
        rows,
        plan_rows,
        train_rows,
        info,
        reused,
        playground_rows,
        command_rows,
        mixed_rows,
    )
    found = report.targets(rows, plan_rows, train_rows, playground_rows, command_rows)
    for target, verdict, figures in found:
        say(f"{verdict:>24s}  {target}: {figures}")
    written = [str(options.out), str(options.json)] + ([str(options.plot)] if plot_ref else [])
    say(f"wrote {', '.join(written)} in {elapsed / 60:.1f} min")
    return 0
