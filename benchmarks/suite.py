"""The benchmark suite's entry point: ``main(argv) -> exit status``."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from . import bench_optimizers, bench_plans, report

ROOT = Path(__file__).resolve().parents[1]
FULL_SIZES = [1_000_000, 10_000_000, 50_000_000]
QUICK_SIZES = [1_000_000, 10_000_000]
LAYOUTS = [10, 1000]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Optimizer steps against the memory-bandwidth bound, every optimlab and "
        "torch.optim path side by side; mini-batch plans against DataLoader. Writes "
        "BENCHMARKS.md and a plot.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a fast subset: 4 variants, 1M and 10M parameters, fewer rounds (about 1 minute)",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument(
        "--sizes", type=int, nargs="+", help="total fp32 parameters per cell (default 1M 10M 50M)"
    )
    parser.add_argument("--layouts", type=int, nargs="+", help="tensor counts (default 10 1000)")
    parser.add_argument("--variants", nargs="+", help="variant ids (default: all)")
    parser.add_argument("--rounds", type=int, help="rounds per cell (default 7; quick 4)")
    parser.add_argument("--no-plans", action="store_true", help="skip the mini-batch plans")
    parser.add_argument(
        "--out",
        type=Path,
        help="the report (default BENCHMARKS.md; with --quick benchmarks/quick/BENCHMARKS.md)",
    )
    parser.add_argument("--plot", type=Path, help="the plot (default next to the report's data)")
    parser.add_argument("--json", type=Path, help="every measured row (default next to the plot)")
    args = parser.parse_args(argv)
    # A quick run never overwrites the full report.
    folder = ROOT / "benchmarks" / ("quick" if args.quick else "")
    args.out = args.out or (folder / "BENCHMARKS.md" if args.quick else ROOT / "BENCHMARKS.md")
    args.plot = args.plot or folder / "optimizer_steps.png"
    args.json = args.json or folder / "results.json"
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and write the report; ``argv`` as on the command line."""
    args = parse(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device here")
        return 2
    start = time.perf_counter()
    for path in (args.out, args.plot, args.json):
        path.parent.mkdir(parents=True, exist_ok=True)
    variants = bench_optimizers.VARIANTS
    if args.variants:
        unknown = set(args.variants) - {v.id for v in variants}
        if unknown:
            print(f"unknown variants: {sorted(unknown)}; known: {[v.id for v in variants]}")
            return 2
        variants = [v for v in variants if v.id in args.variants]
    elif args.quick:
        variants = [v for v in variants if v.quick]
    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    layouts = args.layouts or LAYOUTS
    rounds = args.rounds or (4 if args.quick else 7)
    print(
        f"optimizer steps on {args.device}: {len(variants)} variants, sizes {sizes}, "
        f"layouts {layouts}, {rounds} rounds"
    )
    rows = bench_optimizers.run(
        sizes, layouts, variants, rounds=rounds, slow_rounds=min(rounds, 3), device=args.device
    )
    plan_rows: list[dict] = []
    if not args.no_plans:
        print("mini-batch plans vs DataLoader")
        plan_rows = bench_plans.run(2 if args.quick else 5)
    info = report.machine(args.device)
    plot_ref = None
    if report.plot(rows, args.plot):
        try:
            plot_ref = str(args.plot.resolve().relative_to(args.out.resolve().parent))
        except ValueError:
            plot_ref = str(args.plot)
    elapsed = time.perf_counter() - start
    args.out.write_text(
        report.markdown(rows, plan_rows, info, report.command_line(argv), plot_ref, elapsed)
    )
    args.json.write_text(
        json.dumps({"machine": info, "steps": rows, "plans": plan_rows}, indent=1) + "\n"
    )
    for target, verdict, figures in report.targets(rows, plan_rows):
        print(f"{verdict:>24s}  {target}: {figures}")
    print(f"wrote {args.out} and {args.plot} in {elapsed / 60:.1f} min")
    return 0
