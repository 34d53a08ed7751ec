"""Samples per second of one epoch: MiniBatches vs DataLoader(TensorDataset, shuffle=True).

Both run side by side in the same process on the same tensors (X 60,000 x 784 float32, y int64,
batch 64); each repeat times one full epoch of each, and the table reports medians. The
``strategy`` rows time the ways MiniBatches could gather its batches: NumPy's serial take and
``index_select`` on torch's threads per batch (MiniBatches times both as it runs and keeps the
faster: threads win on an idle machine and lose badly on a busy one), and permuting all the
data once per epoch.

    python -m optimlab.benchmarks.bench_plans
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable

import torch
from torch.utils.data import DataLoader, TensorDataset

from optimlab.data import MiniBatches

M, FEATURES, CLASSES, BATCH = 60_000, 784, 10, 64


def _epoch_seconds(batches, samples: int) -> float:
    start = time.perf_counter()
    n = 0
    for _, yb in batches:  # the epoch's shuffle happens lazily, inside the timed loop
        n += len(yb)
    if torch.cuda.is_available():
        torch.cuda.synchronize()  # no-op unless a gather was queued on a GPU
    elapsed = time.perf_counter() - start
    assert n == samples, f"one epoch must hold {samples} samples, got {n}"
    return elapsed


def _plans(
    X: torch.Tensor, y: torch.Tensor, batch_size: int, device: str
) -> dict[str, Callable[[], Iterable]]:
    """Each plan by name, as a function that returns one epoch's batches.

    MiniBatches and DataLoader, then the other gathers MiniBatches could use, timed to back its
    choice (NumPy's take only where the data is in the CPU's memory)."""
    samples = len(y)
    Xa, ya = (X.numpy(), y.numpy()) if X.device.type == "cpu" else (None, None)
    plan = MiniBatches(X, y, batch_size=batch_size, seed=0)
    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(X, y), batch_size=batch_size, shuffle=True)

    def take_per_batch():
        perm = torch.randperm(samples).numpy()
        for s in range(0, samples, batch_size):
            idx = perm[s : s + batch_size]
            yield torch.from_numpy(Xa.take(idx, axis=0)), torch.from_numpy(ya.take(idx))

    def index_select_per_batch():
        perm = torch.randperm(samples).to(device)
        for s in range(0, samples, batch_size):
            idx = perm[s : s + batch_size]
            yield X.index_select(0, idx), y.index_select(0, idx)

    def permute_once_then_slice():
        perm = torch.randperm(samples).to(device)
        Xp, yp = X.index_select(0, perm), y.index_select(0, perm)
        yield from zip(Xp.split(batch_size), yp.split(batch_size), strict=True)

    plans = {
        "MiniBatches": lambda: plan,
        "DataLoader(TensorDataset)": lambda: loader,
        "strategy: np.take per batch": take_per_batch,
        "strategy: index_select per batch": index_select_per_batch,
        "strategy: permute once, slice views": permute_once_then_slice,
    }
    if Xa is None:
        del plans["strategy: np.take per batch"]
    return plans


def _epochs_seconds(
    plans: dict[str, Callable[[], Iterable]], repeats: int, samples: int
) -> tuple[dict[str, list[float]], float]:
    """``repeats`` timed epochs of every plan, and the share of CPU others took meanwhile."""
    from .bench_optimizers import OtherLoad

    # One untimed epoch each, so allocator and page-fault warm-up is not charged to any.
    for make in plans.values():
        _epoch_seconds(make(), samples)
    times: dict[str, list[float]] = {name: [] for name in plans}
    load = OtherLoad()
    for _ in range(repeats):
        # Interleave within a repeat so drifts in machine load hit every plan alike.
        for name, make in plans.items():
            times[name].append(_epoch_seconds(make(), samples))
    return times, load.share()


def run(
    repeats: int = 7,
    samples: int = M,
    features: int = FEATURES,
    batch_size: int = BATCH,
    progress: Callable[[str], None] = print,
    device: str = "cpu",
) -> list[dict]:
    """Time ``repeats`` epochs of each plan; return one row per plan with median samples/s.

    On ``cuda`` the data lives on the GPU (the NumPy strategy row is left out)."""
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(samples, features, generator=gen).to(device)
    y = torch.randint(0, CLASSES, (samples,), generator=gen).to(device)
    times, others = _epochs_seconds(_plans(X, y, batch_size, device), repeats, samples)

    base = statistics.median(times["DataLoader(TensorDataset)"])
    rows = []
    for name, ts in times.items():
        median = statistics.median(ts)
        rows.append(
            {
                "plan": name,
                "batch_size": batch_size,
                "samples": samples,
                "features": features,
                "repeats": repeats,
                "median_epoch_s": median,
                "samples_per_s": samples / median,
                "speedup_vs_dataloader": base / median,
                "others_cpu": others,
            }
        )
    mine = rows[0]
    progress(
        f"  MiniBatches {mine['samples_per_s']:,.0f} samples/s, "
        f"{mine['speedup_vs_dataloader']:.1f}x DataLoader (others' CPU {others:.0%})"
    )
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| plan | batch | median epoch (s) | samples/s | ratio vs DataLoader | others' CPU |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['plan']} | {r['batch_size']} | {r['median_epoch_s']:.4f} | "
            f"{r['samples_per_s']:,.0f} | {r['speedup_vs_dataloader']:.1f}× "
            f"| {r.get('others_cpu', 0):.0%} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(run()))
