"""Turn benchmark rows into BENCHMARKS.md and a plot. Computes nothing new: every figure comes
from the rows the run produced (medians and ratios of medians)."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

import optimlab

from . import bench_commands, bench_mixed, bench_plans, bench_playground, bench_train
from .bench_optimizers import OPTIMLAB_DEFAULT, OPTIMLAB_EXACT, OPTIMLAB_NO_CHECK, TORCH_PATHS

TARGET_BOUND_10 = 1.15
TARGET_BOUND_1000 = 1.3
TARGET_ADAM_1000 = 1.8
TARGET_RMSPROP = 3.0
TARGET_MEMORY = 1.05
TARGET_PLANS = 10.0
TARGET_LOOP = 1.05


def machine(device: str) -> dict[str, str]:
    info = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "optimlab": optimlab.__version__,
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "torch threads": str(torch.get_num_threads()),
        "ATen CPU kernels": torch.backends.cpu.get_cpu_capability(),
        "memory": _memory(),
    }
    try:
        from optimlab.fused import native

        reason = native.unavailable_reason()
        info["fused path"] = "available" if reason is None else f"unavailable: {reason}"
        if native._toolchain is not None:
            info["C compiler"] = native._toolchain[2].splitlines()[0]
        from optimlab.fused import plancheck

        checks = plancheck.unavailable_reason()
        info["plan checks"] = "C++" if checks is None else f"Python ({checks})"
    except Exception as error:  # pragma: no cover - report what happened, never fail here
        info["fused path"] = f"unknown ({error})"
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory() -> str:
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        return f"{kb / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        return "unknown"


# --- organizing rows ---------------------------------------------------------------------------


def cells(rows: Iterable[dict]) -> dict[tuple[str, int, int], dict[str, dict]]:
    """(variant, size, tensors) -> path -> row, in the order the run produced them."""
    out: dict[tuple[str, int, int], dict[str, dict]] = {}
    for r in rows:
        out.setdefault((r["variant"], r["size"], r["tensors"]), {})[r["path"]] = r
    return out


def torch_fastest(paths: dict[str, dict]) -> dict | None:
    measured = [paths[p] for p in TORCH_PATHS if p in paths]
    return min(measured, key=lambda r: r["median_s"]) if measured else None


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f}"


def _size(n: int) -> str:
    return f"{n / 1e6:g}M"


def _some(items: list[str], shown: int = 6) -> str:
    more = len(items) - shown
    return ", ".join(items[:shown]) + (f" and {more} more" if more > 0 else "")


# --- tables ------------------------------------------------------------------------------------


def summary_table(rows: list[dict], size: int) -> str:
    lines = [
        "| variant | tensors | bytes/param | bound (ms) | default (ms) | default × bound "
        "| default × (bound + check) | no check (ms) | no check × bound | exact × bound "
        "| torch fastest | torch (ms) | speedup vs torch: default | no check "
        "| speedup vs optimlab foreach | others' CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for (variant, s, tensors), paths in cells(rows).items():
        if s != size or OPTIMLAB_DEFAULT not in paths:
            continue
        default = paths[OPTIMLAB_DEFAULT]
        nocheck = paths.get(OPTIMLAB_NO_CHECK)
        exact = paths.get(OPTIMLAB_EXACT)
        best = torch_fastest(paths)
        plain = paths.get("optimlab foreach")
        cols = [
            variant,
            str(tensors),
            str(default["bytes_per_param"]),
            _ms(default["bound_s"]),
            _ms(default["median_s"]),
            f"{default['ratio_to_bound']:.2f}",
            f"**{default['ratio_to_own_bound']:.2f}**",
            _ms(nocheck["median_s"]) if nocheck else "–",
            f"**{nocheck['ratio_to_bound']:.2f}**" if nocheck else "–",
            f"{exact['ratio_to_bound']:.2f}" if exact else "–",
        ]
        if best:
            cols += [
                best["path"].removeprefix("torch "),
                _ms(best["median_s"]),
                f"{best['median_s'] / default['median_s']:.1f}×",
                f"**{best['median_s'] / nocheck['median_s']:.1f}×**" if nocheck else "–",
            ]
        else:
            cols += ["– (no torch twin)", "–", "–", "–"]
        cols.append(f"{plain['median_s'] / default['median_s']:.0f}×" if plain else "–")
        cols.append(f"{default.get('others_cpu', 0):.0%}")
        lines.append("| " + " | ".join(cols) + " |")
    return "\n".join(lines)


def all_paths_table(rows: list[dict]) -> str:
    lines = [
        "| variant | size | tensors | path | median step (ms) | × bound | × optimlab default "
        "| samples × steps | first step (ms) | step memory (MiB) |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (variant, size, tensors), paths in cells(rows).items():
        fused = paths.get(OPTIMLAB_DEFAULT)
        for name, r in paths.items():
            vs = f"{r['median_s'] / fused['median_s']:.2f}" if fused else "–"
            lines.append(
                f"| {variant} | {_size(size)} | {tensors} | {name} | {_ms(r['median_s'])} "
                f"| {r['ratio_to_bound']:.2f} | {vs} | {r['samples']} × {r['steps_per_sample']} "
                f"| {_ms(r['first_step_s'])} | {_mb(r['step_memory_bytes'])} |"
            )
    return "\n".join(lines)


# --- targets -----------------------------------------------------------------------------------


LABEL_CHECKED = "default (fused, with the non-finite gradient check)"
LABEL_DEFAULT = f"{LABEL_CHECKED}, bound of the update"
LABEL_DEFAULT_OWN = (
    "default, its bound counting the check's read (+4 bytes per parameter: the bytes this step "
    "must move)"
)
LABEL_NO_CHECK = 'default without the check (nonfinite_grads="ignore", what torch does)'

# optimlab's own paths that the targets judge, with the label each verdict carries
OURS = ((OPTIMLAB_DEFAULT, LABEL_CHECKED), (OPTIMLAB_NO_CHECK, LABEL_NO_CHECK))

Target = tuple[str, str, str]  # (target, verdict, figures)
Cells = dict[tuple[str, int, int], dict[str, dict]]


def _bound_targets(by_cell: Cells) -> list[Target]:
    """Step time over the bandwidth bound at 10M parameters and more, per layout and path."""
    out = []
    bounds = (
        (OPTIMLAB_DEFAULT, LABEL_DEFAULT, "ratio_to_bound"),
        (OPTIMLAB_DEFAULT, LABEL_DEFAULT_OWN, "ratio_to_own_bound"),
        (OPTIMLAB_NO_CHECK, LABEL_NO_CHECK, "ratio_to_bound"),
    )
    for tensors, limit in ((10, TARGET_BOUND_10), (1000, TARGET_BOUND_1000)):
        for path, label, ratio in bounds:
            big = [
                p[path]
                for (v, s, t), p in by_cell.items()
                if path in p and t == tensors and s >= 10_000_000
            ]
            if not big:
                continue
            worst = max(big, key=lambda r: r[ratio])
            failing = sorted(
                {f"{r['variant']} {_size(r['size'])}" for r in big if r[ratio] > limit}
            )
            out.append(
                (
                    f"≤ {limit}× bound at 10M and 50M in {tensors} tensors: {label}",
                    "met" if not failing else f"not met for {len(failing)} of {len(big)}",
                    f"median {statistics.median(r[ratio] for r in big):.2f}×, worst "
                    f"{worst[ratio]:.2f}× ({worst['variant']} {_size(worst['size'])})"
                    + (f"; over: {_some(failing)}" if failing else ""),
                )
            )
    return out


def _never_slower_targets(by_cell: Cells) -> list[Target]:
    """Each of our paths against torch's fastest path in every cell."""
    out = []
    for path, label in OURS:
        speedups, slower = [], []
        for (v, s, t), paths in by_cell.items():
            best = torch_fastest(paths)
            if best and path in paths:
                x = best["median_s"] / paths[path]["median_s"]
                speedups.append(x)
                if x < 1:
                    slower.append(f"{v} {_size(s)}×{t} ({x:.2f}×)")
        if speedups:
            out.append(
                (
                    f"never slower than torch's fastest path: {label}",
                    "met" if not slower else f"not met in {len(slower)} of {len(speedups)} cells",
                    f"speedup min {min(speedups):.2f}×, median {statistics.median(speedups):.1f}×"
                    + (f"; slower: {_some(slower)}" if slower else ""),
                )
            )
    return out


def _speedup_targets(by_cell: Cells) -> list[Target]:
    """Adam against torch's fused Adam with 1,000 tensors; RMSprop against torch's fastest."""
    out = []
    for variant, limit, label in (
        ("adam", TARGET_ADAM_1000, "≥ 1.8× torch fused Adam with 1,000 tensors"),
        ("rmsprop", TARGET_RMSPROP, "≥ 3× torch's fastest RMSprop"),
    ):
        for path, name in OURS:
            found = []
            for (v, s, t), paths in by_cell.items():
                if v != variant or path not in paths:
                    continue
                other = (
                    torch_fastest(paths)
                    if variant == "rmsprop"
                    else (paths.get("torch fused") if t == 1000 else None)
                )
                if other:
                    found.append((s, t, other["median_s"] / paths[path]["median_s"]))
            if found:
                worst = min(x for _, _, x in found)
                out.append(
                    (
                        f"{label}: {name}",
                        "met" if worst >= limit else "not met",
                        ", ".join(f"{_size(s)}×{t}: {x:.1f}×" for s, t, x in found),
                    )
                )
    return out


def _memory_targets(rows: list[dict]) -> list[Target]:
    """The largest growth of peak memory during steps, at 10M parameters and more."""
    out = []
    for path, label in OURS:
        big = [r for r in rows if r["path"] == path and r["size"] >= 10_000_000]
        if big:
            worst = max(big, key=lambda r: r["memory_ratio"])
            out.append(
                (
                    f"memory: no step temporaries in proportion to the model; peak ≤ 1.05× "
                    f"params + grads + state: {label}",
                    "met" if worst["memory_ratio"] <= TARGET_MEMORY else "not met",
                    f"largest growth of peak resident memory during steps at 10M+: "
                    f"{_mb(worst['step_memory_bytes'])} MiB = {worst['memory_ratio']:.3f}× "
                    f"({worst['variant']} {_size(worst['size'])}×{worst['tensors']})",
                )
            )
    return out


def _plans_targets(plan_rows: list[dict]) -> list[Target]:
    mine = next((r for r in plan_rows if r["plan"] == "MiniBatches"), None)
    if not mine:
        return []
    return [
        (
            "mini-batch plans ≥ 10× DataLoader(TensorDataset, shuffle=True), batch 64",
            "met" if mine["speedup_vs_dataloader"] >= TARGET_PLANS else "not met",
            f"{mine['speedup_vs_dataloader']:.1f}× "
            f"({mine['samples_per_s']:,.0f} samples/s; others' CPU "
            f"{mine.get('others_cpu', 0):.0%})",
        )
    ]


def _loop_targets(train_rows: list[dict]) -> list[Target]:
    fits = [r for r in train_rows if r["loop"] == "optimlab.train.fit"]
    if not fits:
        return []
    slow = [r for r in fits if r["ratio_to_hand_written"] > TARGET_LOOP]
    different = [r for r in fits if not r["same_parameters"]]
    return [
        (
            "training loop within 5% of a hand-written loop",
            "met" if not slow and not different else "not met",
            "; ".join(
                f"{r['case']}: {r['ratio_to_hand_written']:.3f}× "
                f"({r['us_per_step']:.0f} µs per step, same parameters: "
                f"{'yes' if r['same_parameters'] else 'NO'}, others' CPU {r['others_cpu']:.0%})"
                for r in fits
            ),
        )
    ]


def _playground_targets(playground_rows: list[dict]) -> list[Target]:
    cold = next((r for r in playground_rows if r["case"] == "paths-cold"), None)
    if cold is None:
        return []
    slider = next(r for r in playground_rows if r["case"] == "paths-one-slider")
    return [
        (
            "playground: 3 optimizers of 300 steps answer in under 100 ms",
            "met" if cold["median_ms"] <= 1e3 * bench_playground.TARGET_SECONDS else "not met",
            f"median {cold['median_ms']:.0f} ms (fastest {cold['min_ms']:.0f} ms); "
            f"one slider moved: {slider['median_ms']:.0f} ms",
        )
    ]


def _command_targets(command_rows: list[dict]) -> list[Target]:
    return [
        (
            f"`{r['what']}`: {r['promised_where']}",
            "met" if r["median_s"] <= r["promised_s"] else "not met",
            f"median {r['median_s']:.2f} s over {r['repeats']} run(s)",
        )
        for r in command_rows
    ]


def targets(
    rows: list[dict],
    plan_rows: list[dict],
    train_rows: list[dict] | None = None,
    playground_rows: list[dict] | None = None,
    command_rows: list[dict] | None = None,
) -> list[Target]:
    """(target, verdict, figures) for each target (issues 6, 18 and 19) this run measured."""
    by_cell = cells(rows)
    return [
        *_bound_targets(by_cell),
        *_never_slower_targets(by_cell),
        *_speedup_targets(by_cell),
        *_memory_targets(rows),
        *_plans_targets(plan_rows or []),
        *_loop_targets(train_rows or []),
        *_playground_targets(playground_rows or []),
        *_command_targets(command_rows or []),
    ]


WHY = {
    LABEL_DEFAULT: "the non-finite check reads every gradient before the step may write "
    "anything (a NaN found late must leave everything unchanged), so it cannot share the "
    "step's pass: 4 more bytes per parameter (+33% for SGD, +20% for momentum, +14% for Adam), "
    "which torch's paths, never checking, do not move",
    "small steps": "a fixed cost of about 40 to 65 µs per step (the step wrapper, recording the "
    "rule, "
    "the kernel calls) and 0.12 to 0.26 µs per parameter (the plan's checks in C++) weigh on short "
    "steps; beyond that, noise on this shared machine (see others' CPU)",
    "plans": "an epoch of MiniBatches is a gather of every sample's row from memory, bound by "
    "memory latency (about 0.4 µs per 3 KB row on this machine, by the better of NumPy's serial "
    "take and index_select on torch's threads, whichever is faster at the moment); the strategy "
    "rows show no other gather is faster, and DataLoader's own time varies by about 15% between "
    "runs, which moves the ratio across 10× on a shared machine",
    "loop": "fit's own work per step (the history row, the non-finite loss check, the weights of "
    "micro-batches) is a few µs; a larger difference comes from load on this shared machine "
    "(see others' CPU) and repeats that alternate which loop runs first",
    "playground": "a step of an optimlab optimizer on a 2-vector costs about 40 to 65 µs "
    "here, nearly all of it fixed per-call cost (the step wrapper, recording the rule, the "
    "checks), so 900 steps take 50 ms at best; on this shared 2-core machine the median "
    "is higher (see the fastest answer). Moving one slider recomputes one path",
    "commands": "each run starts a fresh interpreter; on this shared 2-core machine load from "
    "other processes lengthens it (see the fastest run)",
}


def _why_torch_fused_adam(rows: list[dict]) -> str:
    """No step beats the bandwidth bound: what torch's fused Adam measured against it."""
    cells = [r for r in rows if r["variant"] == "adam" and r["tensors"] == 1000
             and r["path"] == "torch fused"]  # fmt: skip
    measured = ", ".join(f"{r['ratio_to_bound']:.2f}× at {_size(r['size'])}" for r in cells)
    return (
        f"no step is faster than the bandwidth bound, so being {TARGET_ADAM_1000}× faster than "
        f"torch's fused Adam needs torch at {TARGET_ADAM_1000}× the bound or more; in this run "
        f"torch's fused Adam with 1,000 tensors took {measured or 'no measurement'} the bound "
        "(optimlab's times are in the table above)"
    )


def why(target: str, rows: list[dict]) -> str:
    """The reason a target is not met, from what the run measured (see the tables)."""
    if "mini-batch" in target:
        return WHY["plans"]
    if "training loop" in target:
        return WHY["loop"]
    if target.startswith("playground"):
        return WHY["playground"]
    if target.startswith("`optimlab"):
        return WHY["commands"]
    if "torch fused Adam" in target:
        return _why_torch_fused_adam(rows)
    if target.endswith((LABEL_DEFAULT, LABEL_CHECKED)):
        return WHY[LABEL_DEFAULT]
    return WHY["small steps"]


# --- the document ------------------------------------------------------------------------------


def _header(
    info: dict[str, str], command: str, elapsed: float, smoke: bool, reused: tuple[str, str] | None
) -> list[str]:
    """The title, what kind of run wrote it, when, on which machine, and what it reused."""
    parts = [
        "# Benchmarks: optimizer steps, mini-batch plans, the training loop and the playground",
        "",
    ]
    if smoke:
        parts += [
            "**Smoke run** (`--smoke`): every part on tiny sizes, to check that the suite "
            "runs. The figures mean nothing.",
            "",
        ]
    parts += [
        f"Written by `{command}` on {info['date']} in {elapsed / 60:.1f} min. "
        "Every figure below is a median over rounds measured side by side in one process "
        "(each round times every contender once, so load changes on this shared machine hit "
        "all alike); ratios are ratios of medians.",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in info.items()),
        "",
    ]
    if reused:
        parts += [
            f"**Optimizer steps reused.** The optimizer-step rows below were not measured by "
            f"this run: they come from `{reused[0]}`, written by the run of {reused[1]} on this "
            "machine (`--steps-from`); the plans and the training loop were measured now.",
            "",
        ]
    return parts


def _bound_paragraph(rows: list[dict]) -> list[str]:
    bandwidths = [r["bandwidth_GBps"] for r in rows]
    return [
        "**The bound.** An in-place `a += s * b` over 50M fp32 elements moves 12 bytes per "
        "element; its bandwidth, measured in every round, times the bytes a step must move "
        "per parameter (SGD 12; SGD with momentum, the momentum forms and RMSprop 20; Adam "
        "and AdamW 28; AMSGrad and centered RMSprop with momentum 36) gives the fastest a "
        f"step can be. Measured bandwidth this run: median "
        f"{statistics.median(bandwidths):.1f} GB/s (range {min(bandwidths):.1f} to "
        f"{max(bandwidths):.1f}). At 1M parameters the arrays fit in the 32 MiB L3 cache, "
        "so steps beat the DRAM bound there.",
        "",
    ]


def _load_paragraph(others: list[float]) -> list[str]:
    return [
        "**Load.** This machine is shared. For each measurement the run records the share "
        "of CPU time other processes took meanwhile (`others' CPU`); an optimizer-step "
        "cell above 10% is measured again, up to twice, and the quietest attempt kept. "
        f"This run: median {statistics.median(others):.0%}, largest {max(others):.0%}.",
        "",
    ]


PATHS_PARAGRAPHS = [
    "**Paths.** `optimlab default` is `fused=None`: one compiled loop over all tensors "
    "where a C compiler is available, the plain path's arithmetic but for square roots "
    "(the CPU's correctly rounded one, within 1 ulp per root of PyTorch's MKL sqrt), with "
    "the non-finite gradient check (one more read of the gradients). `no check` is the "
    'same with `nonfinite_grads="ignore"`: what torch\'s paths do, which never check. '
    '`optimlab exact` is `fused="exact"`: the same loop calling PyTorch\'s own MKL '
    "square root, bitwise the plain path's results (for SGD and the momentum forms the "
    "same kernel as the default). `optimlab foreach` / `per-tensor` are the plain paths. "
    "torch's are `torch.optim` with `foreach=False`, `foreach=True` and `fused=True`.",
    "",
    "**What costs what.** (1) The non-finite check reads every gradient once before "
    "the step may write anything (a NaN found late must leave everything unchanged), so "
    "it cannot share the step's pass: +4 bytes per parameter, which the column "
    "`default × (bound + check)` counts. (2) PyTorch's CPU `sqrt` is MKL's vector square "
    "root at about 3 cycles per element; `exact` must call it, which makes RMSprop and "
    "Adam compute-bound on 2 cores; the default does not. (3) Each step costs about "
    "40 (SGD) to 65 µs (Adam) of Python (the step wrapper, recording the rule for its "
    "scalars, the kernel "
    "calls) and 0.12 µs (SGD) to 0.26 µs (Adam) per parameter: the plan's checks that "
    "every parameter, gradient and state buffer is still what the kernel may take "
    "(pointers, sizes, dtypes, shapes, memory clear of what the step writes), in C++ "
    "(`optimlab.fused.plancheck`, built by `optimlab build`; `plan checks` above says "
    "which ran).",
    "",
]


def _targets_section(
    rows: list[dict],
    plan_rows: list[dict],
    train_rows: list[dict],
    playground_rows: list[dict],
    command_rows: list[dict],
) -> list[str]:
    return [
        "## Targets (issues 6, 18 and 19)",
        "",
        "| target | verdict | figures | why, where not met |",
        "|---|---|---|---|",
        *(
            f"| {t} | {v} | {f} | {'' if v == 'met' else why(t, rows)} |"
            for t, v, f in targets(rows, plan_rows, train_rows, playground_rows, command_rows)
        ),
        "",
    ]


def _plans_section(plan_rows: list[dict]) -> list[str]:
    first = plan_rows[0]
    return [
        "## Mini-batch plans vs DataLoader",
        "",
        f"One epoch of {first['samples']:,} × {first['features']} fp32 samples with int64 "
        f"targets, batch {first['batch_size']}, each plan timed {first['repeats']} times, "
        "interleaved (`optimlab/benchmarks/bench_plans.py`). `MiniBatches` gathers each "
        "batch by the faster, timed as it runs, of NumPy's serial take and `index_select` on "
        "torch's threads (the two `per batch` strategy rows; which one wins depends on the "
        "load on the machine); `permute once` is the other way it could work.",
        "",
        bench_plans.markdown(plan_rows),
        "",
    ]


def _train_section(train_rows: list[dict]) -> list[str]:
    return [
        "## The training loop vs a hand-written loop",
        "",
        "`optimlab.train.fit` (no evaluation, checkpoints or progress bar) against the "
        "loop every tutorial writes (`zero_grad`, forward, loss, `backward`, `step`, "
        "`loss.item()` per step, since fit records each step's loss), on the same model, "
        "optimizer (`optimlab.Adam`), plan and epochs, timed alternately "
        "(`optimlab/benchmarks/bench_train.py`). `same parameters`: both runs ended with "
        "bitwise the same parameters in every repeat.",
        "",
        bench_train.markdown(train_rows),
        "",
    ]


def _playground_section(playground_rows: list[dict]) -> list[str]:
    return [
        "## The playground's answer times",
        "",
        "Requests as `optimlab playground`'s page sends them, over loopback to the real server "
        "(Starlette under uvicorn), timed from the request to the last byte of the reply "
        "(`optimlab/benchmarks/bench_playground.py`). `every path computed`: each repeat asks "
        "for new learning rates; `one slider moved`: one of the three changes, and the server "
        "keeps the other two paths.",
        "",
        bench_playground.markdown(playground_rows),
        "",
    ]


def _commands_section(command_rows: list[dict]) -> list[str]:
    return [
        "## Command times",
        "",
        "What the command line promises about its own times, each run as `python -m optimlab` "
        "in a fresh process, the interpreter's start and every import included "
        "(`optimlab/benchmarks/bench_commands.py`); `optimlab build` once into an empty "
        "temporary kernel cache and once more with its kernels built.",
        "",
        bench_commands.markdown(command_rows),
        "",
    ]


def _mixed_section(mixed_rows: list[dict]) -> list[str]:
    first = mixed_rows[0]
    return [
        "## Mixed precision: bfloat16 parameters, float32 state",
        "",
        f"{first['size']:,} bfloat16 parameters with `state_dtype=torch.float32`, every path "
        "stepping the same parameters and gradients, one sample of each per round, medians of "
        f"{first['rounds']} rounds (`optimlab/benchmarks/bench_mixed.py`): `plain` is the "
        "reference (the rule on float32 copies, rounded back), `fused` the C kernel (widens as "
        "it reads, rounds as it writes; bitwise the plain path, tested), `fp32 fused` the same "
        "optimizer on float32 parameters for scale. The bound: the bytes a step moves "
        "(bfloat16 parameters and gradients, float32 state, the non-finite check's read) over "
        "the measured bandwidth.",
        "",
        bench_mixed.markdown(mixed_rows),
        "",
    ]


def _every_path_section(rows: list[dict]) -> list[str]:
    return [
        "## Every path",
        "",
        "`first step` includes allocating state (and, once per configuration and machine, "
        "compiling the fused kernel: cached afterwards). `step memory` is the growth of "
        "peak resident memory during a sample of steps.",
        "",
        all_paths_table(rows),
        "",
    ]


def markdown(
    rows: list[dict],
    plan_rows: list[dict],
    train_rows: list[dict],
    info: dict[str, str],
    command: str,
    plot: str | None,
    elapsed: float,
    smoke: bool = False,
    reused: tuple[str, str] | None = None,
    playground_rows: list[dict] | None = None,
    command_rows: list[dict] | None = None,
    mixed_rows: list[dict] | None = None,
) -> str:
    """BENCHMARKS.md: how the run was made, the targets, then one section per part measured."""
    playground_rows = playground_rows or []
    command_rows = command_rows or []
    others = [r.get("others_cpu", 0.0) for r in rows + plan_rows + train_rows]
    parts = _header(info, command, elapsed, smoke, reused)
    if rows:
        parts += _bound_paragraph(rows)
    if others:
        parts += _load_paragraph(others)
    if rows:
        parts += PATHS_PARAGRAPHS
    parts += _targets_section(rows, plan_rows, train_rows, playground_rows, command_rows)
    if plot:
        parts += [f"![step time over the bandwidth bound]({plot})", ""]
    for size in sorted({r["size"] for r in rows}):
        parts += [f"## {_size(size)} fp32 parameters", "", summary_table(rows, size), ""]
    if plan_rows:
        parts += _plans_section(plan_rows)
    if train_rows:
        parts += _train_section(train_rows)
    if playground_rows:
        parts += _playground_section(playground_rows)
    if command_rows:
        parts += _commands_section(command_rows)
    if mixed_rows:
        parts += _mixed_section(mixed_rows)
    if rows:
        parts += _every_path_section(rows)
    return "\n".join(parts)


def plot(rows: list[dict], path: Path) -> bool:
    """Ratio to the bound per variant and path, at 10M (or the largest size), per layout."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sizes = sorted({r["size"] for r in rows})
    size = 10_000_000 if 10_000_000 in sizes else sizes[-1]
    layouts = sorted({r["tensors"] for r in rows if r["size"] == size})
    by_cell = cells(rows)
    variants = list(dict.fromkeys(r["variant"] for r in rows if r["size"] == size))
    series = [
        OPTIMLAB_DEFAULT,
        OPTIMLAB_NO_CHECK,
        OPTIMLAB_EXACT,
        "torch fastest",
        "optimlab foreach",
    ]
    colors = ["#2ca02c", "#1f77b4", "#aec7e8", "#d62728", "#7f7f7f"]
    fig, axes = plt.subplots(len(layouts), 1, figsize=(12, 4.2 * len(layouts)), squeeze=False)
    width = 0.8 / len(series)
    for ax, tensors in zip(axes[:, 0], layouts):
        x = np.arange(len(variants))
        for k, (name, color) in enumerate(zip(series, colors)):
            values = []
            for v in variants:
                paths = by_cell.get((v, size, tensors), {})
                row = torch_fastest(paths) if name == "torch fastest" else paths.get(name)
                values.append(row["ratio_to_bound"] if row else np.nan)
            ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width, label=name, color=color)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axhline(
            TARGET_BOUND_10 if tensors <= 10 else TARGET_BOUND_1000,
            color="green",
            linestyle="--",
            linewidth=0.8,
            label="target",
        )
        ax.set_yscale("log")
        ax.set_ylabel("step time / bandwidth bound")
        ax.set_title(f"{_size(size)} fp32 parameters in {tensors} tensors")
        ax.set_xticks(x)
        ax.set_xticklabels(variants, rotation=30, ha="right", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
