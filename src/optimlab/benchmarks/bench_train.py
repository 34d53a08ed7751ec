"""The training loop against a hand-written loop doing the same work, side by side.

Both train the same model (same initial weights) with the same optimizer on the same
:class:`~optimlab.data.MiniBatches` plan (same seed, so the same batches in the same order) for
the same epochs. The hand-written loop is the one every PyTorch tutorial writes::

    for epoch in range(epochs):
        for xb, yb in plan:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())  # fit records every step's loss in its history

:func:`optimlab.train.fit` runs with ``progress=False`` and no evaluation, checkpoints or
callbacks, so the only difference is fit's own bookkeeping. Each repeat times one run of each
(interleaved, the order alternating, so load drifts hit both alike); the table reports medians
and the ratio of medians. After every repeat both runs must end with bitwise the same parameters
(checked, and reported): they did the same work.

Cases: an MLP on MNIST-sized synthetic data (60,000 x 784, batch 64, where a step's arithmetic
dominates), and a small model on narrow data (where fit's per-step cost shows most).

    python -m optimlab.benchmarks.bench_train
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

import optimlab
from optimlab.data import MiniBatches
from optimlab.train import fit


@dataclass(frozen=True)
class TrainCase:
    id: str
    samples: int
    features: int
    hidden: int
    classes: int
    batch_size: int = 64
    epochs: int = 1
    #: repeats of this case per repeat asked for: short runs are repeated more, since their
    #: ratio is the one most easily moved by noise
    repeat_factor: int = 1

    def describe(self) -> str:
        return (
            f"MLP {self.features}-{self.hidden}-{self.classes}, {self.samples:,} x "
            f"{self.features} fp32, batch {self.batch_size}, {self.epochs} epoch"
            + ("s" if self.epochs != 1 else "")
        )


CASES = [
    # Runs of the same loop vary by up to 2x on this 2-core machine (PyTorch's two OpenMP
    # threads against the hypervisor's scheduling), so each case is repeated many times.
    TrainCase(
        "mlp-784-256-10", samples=60_000, features=784, hidden=256, classes=10, repeat_factor=3
    ),
    TrainCase("small-32-16-2", samples=60_000, features=32, hidden=16, classes=2, repeat_factor=5),
]
SMOKE_CASES = [TrainCase("smoke-8-4-2", samples=256, features=8, hidden=4, classes=2)]


def _data(case: TrainCase, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(case.samples, case.features, generator=gen)
    y = torch.randint(0, case.classes, (case.samples,), generator=gen)
    return X.to(device), y.to(device)


def _model(case: TrainCase) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(case.features, case.hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(case.hidden, case.classes),
    )


def _make_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    return optimlab.Adam(model.parameters(), lr=1e-3)


def hand_written(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, plan: MiniBatches, epochs: int
) -> list[float]:
    """The loop every tutorial writes (see the module docstring)."""
    loss_fn = torch.nn.functional.cross_entropy
    losses = []
    model.train()
    for _ in range(epochs):
        for xb, yb in plan:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return losses


def with_fit(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, plan: MiniBatches, epochs: int
) -> list[float]:
    result = fit(model, optimizer, plan, epochs=epochs, progress=False)
    return [row["loss"] for row in result.history]


LOOPS: dict[str, Callable[..., list[float]]] = {
    "hand-written loop": hand_written,
    "optimlab.train.fit": with_fit,
}


def _run_once(case, loop, initial, X, y) -> tuple[float, dict[str, torch.Tensor], list[float]]:
    model = _model(case).to(X.device)
    model.load_state_dict(initial)
    optimizer = _make_optimizer(model)
    plan = MiniBatches(X, y, batch_size=case.batch_size, seed=0)
    start = time.perf_counter()
    losses = loop(model, optimizer, plan, case.epochs)
    elapsed = time.perf_counter() - start
    return elapsed, {k: v.detach().clone() for k, v in model.state_dict().items()}, losses


def run(
    repeats: int = 5,
    cases: list[TrainCase] | None = None,
    progress: Callable[[str], None] = print,
    device: str = "cpu",
) -> list[dict]:
    """Time ``repeats`` runs of each loop per case; one row per (case, loop). Both loops read
    each step's loss (``loss.item()``), which on a GPU waits for the step: timings are whole."""
    from .bench_optimizers import OtherLoad

    rows = []
    for case in cases or CASES:
        X, y = _data(case, device)
        initial = copy.deepcopy(_model(case).state_dict())
        steps = case.epochs * len(MiniBatches(X, y, batch_size=case.batch_size))
        # One untimed run each: allocator, page-fault and (once per machine) compile warm-up.
        for loop in LOOPS.values():
            _run_once(case, loop, initial, X, y)
        times: dict[str, list[float]] = {name: [] for name in LOOPS}
        same = True
        load = OtherLoad()
        order = list(LOOPS.items())
        for r in range(repeats * case.repeat_factor):
            results = {}
            for name, loop in order if r % 2 == 0 else order[::-1]:
                elapsed, params, losses = _run_once(case, loop, initial, X, y)
                times[name].append(elapsed)
                results[name] = (params, losses)
            (pa, la), (pb, lb) = results.values()
            same = same and la == lb and all(torch.equal(pa[k], pb[k]) for k in pa)
        others = load.share()
        base = statistics.median(times["hand-written loop"])
        for name, ts in times.items():
            median = statistics.median(ts)
            rows.append(
                {
                    "case": case.id,
                    "description": case.describe(),
                    "loop": name,
                    "steps": steps,
                    "repeats": repeats * case.repeat_factor,
                    "median_s": median,
                    "min_s": min(ts),
                    "us_per_step": 1e6 * median / steps,
                    "ratio_to_hand_written": median / base,
                    "same_parameters": same,
                    "others_cpu": others,
                }
            )
        fit_row = rows[-1]
        progress(
            f"  {case.id:16s} hand-written {1e3 * base:8.1f} ms  "
            f"fit {1e3 * fit_row['median_s']:8.1f} ms  "
            f"ratio {fit_row['ratio_to_hand_written']:.3f}  same parameters: {same}"
            f"  (others' CPU {others:.0%})"
        )
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| case | loop | steps | repeats | median run (s) | µs per step | × hand-written "
        "| same parameters | others' CPU |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['description']} | {r['loop']} | {r['steps']:,} | {r['repeats']} "
            f"| {r['median_s']:.3f} "
            f"| {r['us_per_step']:.1f} | {r['ratio_to_hand_written']:.3f} "
            f"| {'yes' if r['same_parameters'] else '**no**'} | {r['others_cpu']:.0%} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(run()))
