"""Samples per second of one epoch: MiniBatches vs DataLoader(TensorDataset, shuffle=True).

Both run side by side in the same process on the same tensors (X 60,000 x 784 float32, y int64,
batch 64); each repeat times one full epoch of each, and the table reports medians. Two rows
time other ways MiniBatches could gather a batch (``index_select`` per batch; permute the whole
data once per epoch then yield slice views), to back the choice it makes.

    python benchmarks/bench_plans.py
"""

from __future__ import annotations

import statistics
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from optimlab.data import MiniBatches

M, FEATURES, CLASSES, BATCH = 60_000, 784, 10, 64


def _epoch_seconds(batches) -> float:
    start = time.perf_counter()
    n = 0
    for _, yb in batches:  # the epoch's shuffle happens lazily, inside the timed loop
        n += len(yb)
    elapsed = time.perf_counter() - start
    assert n == M, f"one epoch must hold {M} samples, got {n}"
    return elapsed


def run(repeats: int = 5) -> list[dict]:
    """Time ``repeats`` epochs of each plan; return one row per plan with median samples/s."""
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(M, FEATURES, generator=gen)
    y = torch.randint(0, CLASSES, (M,), generator=gen)
    plan = MiniBatches(X, y, batch_size=BATCH, seed=0)
    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(X, y), batch_size=BATCH, shuffle=True)

    # Other gathers MiniBatches could use, timed to back its choice of NumPy's serial take.
    def index_select_per_batch():
        perm = torch.randperm(M)
        for s in range(0, M, BATCH):
            idx = perm[s : s + BATCH]
            yield X.index_select(0, idx), y.index_select(0, idx)

    def permute_once_then_slice():
        perm = torch.randperm(M)
        Xp, yp = X.index_select(0, perm), y.index_select(0, perm)
        yield from zip(Xp.split(BATCH), yp.split(BATCH), strict=True)

    plans = {
        "MiniBatches": lambda: plan,
        "DataLoader(TensorDataset)": lambda: loader,
        "strategy: index_select per batch": index_select_per_batch,
        "strategy: permute once, slice views": permute_once_then_slice,
    }
    # One untimed epoch each, so allocator and page-fault warm-up is not charged to any.
    for make in plans.values():
        _epoch_seconds(make())
    times: dict[str, list[float]] = {name: [] for name in plans}
    for _ in range(repeats):
        # Interleave within a repeat so drifts in machine load hit every plan alike.
        for name, make in plans.items():
            times[name].append(_epoch_seconds(make()))

    base = statistics.median(times["DataLoader(TensorDataset)"])
    rows = []
    for name, ts in times.items():
        median = statistics.median(ts)
        rows.append(
            {
                "plan": name,
                "batch_size": BATCH,
                "samples": M,
                "repeats": repeats,
                "median_epoch_s": median,
                "samples_per_s": M / median,
                "speedup_vs_dataloader": base / median,
            }
        )
    return rows


def _markdown(rows: list[dict]) -> str:
    lines = [
        "| plan | batch | median epoch (s) | samples/s | ratio vs DataLoader |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['plan']} | {r['batch_size']} | {r['median_epoch_s']:.4f} | "
            f"{r['samples_per_s']:,.0f} | {r['speedup_vs_dataloader']:.1f}x |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(_markdown(run()))
