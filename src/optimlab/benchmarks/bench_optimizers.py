"""Step time of every optimizer and variant, on every optimlab and torch.optim path, side by side.

For each variant, size (total fp32 parameters) and layout (number of equal tensors), all paths
step the *same* parameters and gradients in the same process; each round times one sample of
every path and one in-place ``a += s * b`` over 50M floats, whose bandwidth sets the bound
(``bytes_per_param * parameters / bandwidth``), so machine load drifts hit all alike. The table
reports medians over rounds and ratios of medians.

Paths: ``optimlab default`` (``fused=None``: the fused kernel, with the non-finite gradient
check), ``optimlab no check`` (the same with ``nonfinite_grads="ignore"``, which is what torch
does), ``optimlab exact`` (``fused="exact"``: PyTorch's own square root, bitwise the plain path,
with the check), ``optimlab foreach`` and ``optimlab per-tensor`` (the plain paths), and
torch's ``for-loop``, ``foreach`` and ``fused`` (where torch has one). Paths with the check read
every gradient once more, before the step, so their own bound counts 4 (fp32) more bytes per
parameter (``check_bound_s``). At the
largest size the slow plain paths are left out (each step takes seconds) except torch's plain
paths for variants torch has no fused kernel for, which are then torch's fastest.

Memory: before each sample the peak resident size is reset (``/proc/self/clear_refs``); the
peak's growth during the sample is memory the step allocated (``cuda``: the allocator's peak).
"""

from __future__ import annotations

import functools
import gc
import math
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..fused import plancheck
from ..fused.steps import traffic
from ..optim import registry
from ..optim.registry import REGISTRY

BOUND_ELEMENTS = 50_000_000
FLOAT_BYTES = 4


@dataclass(frozen=True)
class Variant:
    id: str
    #: make(params, **dispatch) -> the optimlab optimizer
    make: Callable[..., torch.optim.Optimizer]
    #: bytes an fp32 step must move per parameter (reads + writes of every array it touches)
    bytes_per_param: int
    #: the torch.optim optimizer with the same update, where there is one
    torch_make: Callable[..., torch.optim.Optimizer] | None = None
    #: state buffers per parameter (for the memory accounting)
    buffers: int = 0
    quick: bool = False
    note: str = ""


LR = 1e-4


def _benchmarked(variant: registry.Variant) -> Variant:
    """A configuration of the registry, as this benchmark runs it (at lr=LR). Its traffic is
    what its recorded rule reads and writes (:func:`optimlab.fused.steps.traffic`)."""
    arguments = {**variant.configuration.arguments, "lr": LR}
    optimizer = variant.entry.cls([torch.zeros(1, requires_grad=True)], **arguments)
    read, written = traffic(optimizer)
    twin = variant.torch_twin
    return Variant(
        variant.id,
        functools.partial(variant.entry.cls, **arguments),
        FLOAT_BYTES * (len(read) + len(written)),
        functools.partial(twin, **arguments) if twin is not None else None,
        buffers=len(optimizer._buffer_names(optimizer.param_groups[0])),
        quick=variant.configuration.quick,
        note=variant.configuration.note or f"reads {', '.join(read)}; writes {', '.join(written)}",
    )


#: every fusable optimizer's configurations of the registry (:mod:`optimlab.optim.registry`)
VARIANTS: list[Variant] = [
    _benchmarked(variant) for entry in REGISTRY.values() for variant in entry.benchmarked()
]

#: path name -> (optimizer factory from a variant, whether it is a slow plain path)
PATHS: dict[str, tuple[Callable[[Variant, list], torch.optim.Optimizer | None], bool]] = {
    "optimlab default": (lambda v, ps: v.make(ps), False),
    "optimlab no check": (lambda v, ps: v.make(ps, nonfinite_grads="ignore"), False),
    "optimlab exact": (lambda v, ps: v.make(ps, fused="exact"), False),
    "optimlab foreach": (lambda v, ps: v.make(ps, foreach=True), True),
    "optimlab per-tensor": (lambda v, ps: v.make(ps, foreach=False), True),
    "torch for-loop": (
        lambda v, ps: v.torch_make(ps, foreach=False) if v.torch_make else None,
        True,
    ),
    "torch foreach": (lambda v, ps: v.torch_make(ps, foreach=True) if v.torch_make else None, True),
    "torch fused": (lambda v, ps: _torch_fused(v, ps), False),
}
TORCH_PATHS = ("torch for-loop", "torch foreach", "torch fused")
OPTIMLAB_DEFAULT = "optimlab default"
OPTIMLAB_NO_CHECK = "optimlab no check"
OPTIMLAB_EXACT = "optimlab exact"
#: the paths that read every gradient once more for the non-finite check
CHECKED_PATHS = (OPTIMLAB_DEFAULT, OPTIMLAB_EXACT, "optimlab foreach", "optimlab per-tensor")


def _torch_fused(variant: Variant, params: list) -> torch.optim.Optimizer | None:
    if variant.torch_make is None:
        return None
    try:
        return variant.torch_make(params, fused=True)
    except (TypeError, RuntimeError, ValueError):  # no fused kernel for this optimizer/device
        return None


# --- measuring ---------------------------------------------------------------------------------


class Clock:
    """Wall time of a callable, synchronizing the device around it."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def time(self, fn: Callable[[], Any], repeat: int = 1) -> float:
        self.sync()
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        self.sync()
        return (time.perf_counter() - start) / repeat


class Memory:
    """Growth of peak memory during a call: resident set on the CPU, allocator on CUDA."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.works = True
        if device.type == "cpu":
            try:
                self._clear()
            except OSError:
                self.works = False

    @staticmethod
    def _clear() -> None:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak resident size to the current one

    @staticmethod
    def _status(key: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        return 0

    def start(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return torch.cuda.memory_allocated(self.device)
        if not self.works:
            return 0
        self._clear()
        return self._status("VmRSS:")

    def growth(self, before: int) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - before
        if not self.works:
            return 0
        return max(0, self._status("VmHWM:") - before)


#: a cell during which other processes used at most this share of the CPU is kept as it is
QUIET = 0.1


class OtherLoad:
    """The share of the machine's CPU time that other processes used since creation.

    From ``/proc/stat`` (all CPUs, steal time counted as busy) minus this process's own time
    (``/proc/self/stat``); 0 where these files do not exist.
    """

    def __init__(self) -> None:
        self._start = self._read()

    @staticmethod
    def _read() -> tuple[int, int, int] | None:
        try:
            with open("/proc/stat") as f:
                values = [int(v) for v in f.readline().split()[1:9]]
            with open("/proc/self/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ours = int(fields[11]) + int(fields[12])  # utime + stime, in the same clock ticks
            return sum(values), values[3] + values[4], ours  # total, idle + iowait, ours
        except (OSError, ValueError, IndexError):
            return None

    def share(self) -> float:
        end = self._read()
        if end is None or self._start is None:
            return 0.0
        total = end[0] - self._start[0]
        busy = total - (end[1] - self._start[1])
        ours = end[2] - self._start[2]
        return max(0.0, min(1.0, (busy - ours) / total)) if total > 0 else 0.0


def bandwidth_probe(device: torch.device, elements: int = BOUND_ELEMENTS) -> Callable[[], float]:
    """A function timing one in-place ``a += s * b`` over ``elements`` floats (50M: far beyond
    the caches); returns bytes/second."""
    a = torch.rand(elements, device=device)
    b = torch.rand(elements, device=device)
    clock = Clock(device)
    clock.time(lambda: a.add_(b, alpha=1e-9))  # first touch

    def probe() -> float:
        return 3 * FLOAT_BYTES * elements / clock.time(lambda: a.add_(b, alpha=1e-9))

    return probe


def make_parameters(total: int, tensors: int, device: torch.device) -> list[torch.Tensor]:
    """``tensors`` separately allocated fp32 parameters of ``total // tensors`` elements, with
    fixed random gradients (never zeroed: every step sees the same gradients)."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    size = total // tensors
    params = []
    for _ in range(tensors):
        p = torch.rand(size, generator=generator).to(device).requires_grad_(True)
        p.grad = (torch.rand(size, generator=generator) - 0.5).to(device)
        params.append(p)
    return params


def paths_for(variant: Variant, size: int, largest: int) -> list[str]:
    names = []
    for name, (_, slow) in PATHS.items():
        if name.startswith("torch") and variant.torch_make is None:
            continue
        if slow and size >= largest:
            # Keep torch's plain paths where torch has no fused kernel: they are its fastest.
            if not (
                name in ("torch for-loop", "torch foreach") and not variant_has_torch_fused(variant)
            ):
                continue
        names.append(name)
    return names


def variant_has_torch_fused(variant: Variant) -> bool:
    p = torch.zeros(2, requires_grad=True)
    p.grad = torch.zeros(2)
    opt = _torch_fused(variant, [p])
    if opt is None:
        return False
    try:
        opt.step()
        return True
    except (RuntimeError, TypeError):
        return False


def bench_cell(
    variant: Variant,
    size: int,
    tensors: int,
    device: torch.device,
    probe: Callable[[], float],
    rounds: int,
    slow_rounds: int,
    largest: int,
) -> list[dict]:
    """Time every path of one (variant, size, layout) cell; one row per path."""
    clock = Clock(device)
    memory = Memory(device)
    params = make_parameters(size, tensors, device)
    # torch's multi-tensor SGD with Nesterov momentum adds the momentum into the gradients in
    # place (torch/optim/sgd.py, `_foreach_add_(device_grads, bufs, ...)`): they grow about
    # 2.4x a step and reach Inf in about 100 steps, which the next path's non-finite check
    # then refuses. Every path is given back the same gradients after each of its samples.
    grads = [p.grad for p in params]
    pristine = [g.clone() for g in grads]
    optimizers: dict[str, torch.optim.Optimizer] = {}
    for name in paths_for(variant, size, largest):
        opt = PATHS[name][0](variant, params)
        if opt is not None:
            optimizers[name] = opt
    # Warm-up: the first step allocates state (and compiles), the second is the steady state.
    first: dict[str, float] = {}
    for name, opt in optimizers.items():
        first[name] = clock.time(opt.step)
        clock.time(opt.step)
    # Steps per sample: enough for a sample of about 50 ms (shorter ones vary by ±15%).
    per_sample = {
        name: max(1, min(50, math.ceil(0.05 / max(clock.time(opt.step), 1e-6))))
        for name, opt in optimizers.items()
    }
    torch._foreach_copy_(grads, pristine)
    times: dict[str, list[float]] = {name: [] for name in optimizers}
    growth: dict[str, int] = {name: 0 for name in optimizers}
    bandwidths: list[float] = []
    order = list(optimizers.items())
    shuffle = random.Random(0).shuffle
    for r in range(rounds):
        bandwidths.append(probe())
        shuffle(order)  # no path always runs first after the probe
        for name, opt in order:
            if PATHS[name][1] and r >= slow_rounds:
                continue
            before = memory.start()
            times[name].append(clock.time(opt.step, per_sample[name]))
            growth[name] = max(growth[name], memory.growth(before))
            torch._foreach_copy_(grads, pristine)
    cell = {"variant": variant.id, "size": size, "tensors": tensors, "device": device.type}
    rows = [
        _row(cell, variant, name, ts, per_sample[name], first[name], growth[name], bandwidths)
        for name, ts in times.items()
    ]
    del optimizers, params, grads, pristine
    gc.collect()
    return rows


def _row(
    cell: dict[str, Any],
    variant: Variant,
    path: str,
    times: list[float],
    per_sample: int,
    first: float,
    growth: int,
    bandwidths: list[float],
) -> dict[str, Any]:
    """One path's row of a cell: its median against the bandwidth bound, and its memory."""
    size = cell["size"]
    bandwidth = statistics.median(bandwidths)
    bound = variant.bytes_per_param * size / bandwidth
    # paths with the non-finite check read every gradient once more
    own_bound = bound
    if path in CHECKED_PATHS:
        own_bound = (variant.bytes_per_param + FLOAT_BYTES) * size / bandwidth
    model_bytes = FLOAT_BYTES * size * (2 + variant.buffers)
    median = statistics.median(times)
    return {
        "variant": cell["variant"],
        "size": size,
        "tensors": cell["tensors"],
        "path": path,
        "device": cell["device"],
        "median_s": median,
        "samples": len(times),
        "steps_per_sample": per_sample,
        "first_step_s": first,
        "bound_s": bound,
        "ratio_to_bound": median / bound,
        "check_bound_s": own_bound,
        "ratio_to_own_bound": median / own_bound,
        "bandwidth_GBps": bandwidth / 1e9,
        "bytes_per_param": variant.bytes_per_param,
        "step_memory_bytes": growth,
        "model_bytes": model_bytes,
        "memory_ratio": (model_bytes + growth) / model_bytes,
    }


def run(
    sizes: list[int],
    layouts: list[int],
    variants: list[Variant],
    rounds: int = 7,
    slow_rounds: int = 3,
    device: str = "cpu",
    progress: Callable[[str], None] = print,
    retries: int = 2,
    bound_elements: int = BOUND_ELEMENTS,
    all_paths: bool = False,
) -> list[dict]:
    """Benchmark every cell; return one row per (variant, size, layout, path).

    The slow plain paths are left out at the largest size unless ``all_paths``."""
    dev = torch.device(device)
    if plancheck.build() is None:  # built once per machine (about 20 s), then cached
        progress(f"  plan checks in Python: {plancheck.unavailable_reason()}")
    probe = bandwidth_probe(dev, bound_elements)
    largest = max(sizes) + 1 if all_paths else max(sizes)
    rows: list[dict] = []
    for size in sizes:
        for tensors in layouts:
            for variant in variants:
                start = time.perf_counter()
                # This machine is shared: a cell measured while other processes took a good
                # share of the CPU is measured again (at most twice more); the quietest stays.
                best: list[dict] | None = None
                for _ in range(1 + retries):
                    load = OtherLoad()
                    cell = bench_cell(
                        variant, size, tensors, dev, probe, rounds, slow_rounds, largest
                    )
                    others = load.share()
                    for row in cell:
                        row["others_cpu"] = others
                    if best is None or others < best[0]["others_cpu"]:
                        best = cell
                    if others <= QUIET:
                        break
                cell = best
                rows += cell
                by_path = {r["path"]: r["ratio_to_bound"] for r in cell}
                summary = "  ".join(
                    f"{label} {by_path[path]:.2f}x"
                    for path, label in (
                        (OPTIMLAB_DEFAULT, "default"),
                        (OPTIMLAB_NO_CHECK, "no check"),
                        (OPTIMLAB_EXACT, "exact"),
                    )
                    if path in by_path
                )
                progress(
                    f"  {variant.id:40s} {size / 1e6:>4g}M x {tensors:<5d} bound: {summary}"
                    f"  (others' CPU {cell[0]['others_cpu']:.0%}, "
                    f"{time.perf_counter() - start:.1f} s)"
                )
    return rows
