"""Mixed precision on the CPU: bfloat16 parameters with float32 state, fused and plain.

For each case (optimizer, tensor count) all paths step the *same* bfloat16 parameters and
gradients, in the same process, one sample of each path per round (so load drifts hit all
alike); the table reports medians over rounds and the ratio of the plain path's median to the
fused one's. Paths:

* ``plain``: ``fused=False``, the reference: the rule on float32 copies, then rounded back;
* ``fused``: the default, the C kernel (widens as it reads, rounds as it writes);
* ``fused, stochastic``: the same with ``stochastic_rounding=True``;
* ``fp32 fused``: the same optimizer on float32 parameters with float32 state, for scale.

The bound is the bytes a step must move (bfloat16 parameters and gradients, float32 state,
and the non-finite check's second read of the gradients) over the bandwidth of an in-place
``a += s * b`` measured in the same rounds.

    python -m optimlab.benchmarks.bench_mixed
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import torch

from ..fused.steps import traffic
from . import bench_optimizers

__all__ = ["CASES", "markdown", "run"]

#: (id, what the table calls it, the optimizer class's name, its hyperparameters)
CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("adam", "Adam", "Adam", {"lr": 1e-3}),
    ("adamw", "AdamW", "AdamW", {"lr": 1e-3, "weight_decay": 0.01}),
    ("sgd-momentum", "SGD, momentum 0.9", "SGD", {"lr": 1e-2, "momentum": 0.9}),
]
PATHS = ("plain", "fused", "fused, stochastic", "fp32 fused")
#: a path's dtype and keyword arguments
_PATH_SETTINGS: dict[str, tuple[torch.dtype, dict[str, Any]]] = {
    "plain": (torch.bfloat16, {"fused": False, "state_dtype": torch.float32}),
    "fused": (torch.bfloat16, {"state_dtype": torch.float32}),
    "fused, stochastic": (
        torch.bfloat16,
        {"state_dtype": torch.float32, "stochastic_rounding": True},
    ),
    "fp32 fused": (torch.float32, {}),
}
SIZE = 10_000_000
LAYOUTS = (10, 1000)


def _bytes_per_param(optimizer: torch.optim.Optimizer) -> int:
    """What a mixed step moves per parameter: bfloat16 parameters and gradients (2 bytes),
    float32 state (4), each operand as often as it is read and written, and the check's
    second read of the gradient."""
    read, written = traffic(optimizer)
    size = {"param": 2, "grad": 2}
    return sum(size.get(name, 4) for name in read + written) + 2


def _paths(
    name: str, settings: dict[str, Any], size: int, tensors: int
) -> dict[str, tuple[Callable[[], Any], list[torch.Tensor]]]:
    """Each path's step, on parameters made alike (bfloat16 values, also for fp32)."""
    import optimlab

    cls = getattr(optimlab, name)
    generator = torch.Generator().manual_seed(0)
    values = [torch.randn(size // tensors, generator=generator) for _ in range(tensors)]
    grads = [torch.randn(size // tensors, generator=generator) * 1e-2 for _ in range(tensors)]
    paths = {}
    for path in PATHS:
        dtype, keywords = _PATH_SETTINGS[path]
        params = [v.to(dtype).requires_grad_() for v in values]
        for p, g in zip(params, grads):
            p.grad = g.to(dtype)
        optimizer = cls(params, **settings, **keywords)
        optimizer.step()  # state made, kernels compiled, plan made: untimed
        optimizer.step()
        paths[path] = (optimizer.step, params)
    return paths


def run(
    rounds: int = 7,
    size: int = SIZE,
    layouts: tuple[int, ...] = LAYOUTS,
    steps: int = 5,
    progress: Callable[[str], None] = print,
    bound_elements: int = bench_optimizers.BOUND_ELEMENTS,
) -> list[dict[str, Any]]:
    """Median seconds per step of every path of every case, ``rounds`` samples of ``steps``
    steps each, interleaved; one row per case and path."""
    import optimlab

    progress(
        f"mixed precision: {len(CASES)} optimizers, {size:,} bfloat16 parameters in "
        f"{', '.join(map(str, layouts))} tensors, {rounds} rounds"
    )
    device = torch.device("cpu")
    clock = bench_optimizers.Clock(device)
    bandwidth = bench_optimizers.bandwidth_probe(device, bound_elements)
    rows = []
    for case, what, name, settings in CASES:
        probe = getattr(optimlab, name)(
            [torch.zeros(1, dtype=torch.bfloat16, requires_grad=True)],
            **settings,
            state_dtype=torch.float32,
        )
        per_param = _bytes_per_param(probe)
        for tensors in layouts:
            paths = _paths(name, settings, size, tensors)
            times: dict[str, list[float]] = {path: [] for path in PATHS}
            speeds = []
            for _ in range(rounds):
                for path, (step, _) in paths.items():
                    times[path].append(clock.time(step, repeat=steps))
                speeds.append(bandwidth())
            bound = per_param * size / statistics.median(speeds)
            for path in PATHS:
                rows.append(
                    {
                        "case": case,
                        "what": what,
                        "tensors": tensors,
                        "size": size,
                        "path": path,
                        "median_s": statistics.median(times[path]),
                        "min_s": min(times[path]),
                        "rounds": rounds,
                        "bound_s": bound,
                        "bytes_per_param": per_param,
                    }
                )
            del paths
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    by_case: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for r in rows:
        by_case.setdefault((r["what"], r["tensors"]), {})[r["path"]] = r
    lines = [
        "| optimizer | tensors | " + " | ".join(PATHS) + " | plain ÷ fused | fused ÷ bound |",
        "| --- | ---: | " + " | ".join("---:" for _ in PATHS) + " | ---: | ---: |",
    ]
    for (what, tensors), paths in by_case.items():
        cells = [f"{paths[p]['median_s'] * 1e3:.1f} ms" for p in PATHS]
        fused = paths["fused"]["median_s"]
        lines.append(
            f"| {what} | {tensors:,} | " + " | ".join(cells) + f" | "
            f"{paths['plain']['median_s'] / fused:.1f}× | {fused / paths['fused']['bound_s']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(run()))
