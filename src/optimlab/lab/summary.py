"""Numbers over seeds: the mean and spread of each outcome, and mean curves with their range.

>>> mean_std([1.0, 2.0, 3.0])
(2.0, 1.0, 3)
>>> mean_std([1.0, float("nan")])  # NaN (a target not reached) is left out, and counted
(1.0, 0.0, 1)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .runner import RunResult, outcome

__all__ = ["aggregate", "curves", "mean_std"]


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for one value) and count of the non-NaN values.

    An infinite value (a diverged run) makes the mean infinite and the spread NaN.
    """
    kept = [float(v) for v in values if not math.isnan(v)]
    if not kept:
        return math.nan, math.nan, 0
    if not all(math.isfinite(v) for v in kept):
        return math.inf if math.inf in kept else -math.inf, math.nan, len(kept)
    spread = float(np.std(kept, ddof=1)) if len(kept) > 1 else 0.0
    return float(np.mean(kept)), spread, len(kept)


def aggregate(results: Sequence[RunResult]) -> dict[str, float]:
    """One row for the runs of one contender on one problem (one run per seed).

    For every outcome ``k`` of :func:`optimlab.lab.runner.outcome` the row holds ``k_mean``,
    ``k_std`` and ``k_count``; ``runs``, ``diverged`` and ``reached`` count runs.
    """
    rows = [outcome(r) for r in results]
    keys = list(dict.fromkeys(k for row in rows for k in row))
    summary: dict[str, float] = {"runs": len(rows)}
    for key in keys:
        mean, std, count = mean_std([row.get(key, math.nan) for row in rows])
        summary[f"{key}_mean"], summary[f"{key}_std"], summary[f"{key}_count"] = mean, std, count
    summary["diverged"] = sum(int(row["diverged"]) for row in rows)
    summary["reached"] = sum(not math.isnan(row["steps_to_target"]) for row in rows)
    return summary


def curves(results: Sequence[RunResult], metrics: Sequence[str]) -> dict[str, list[float]]:
    """Mean curves over seeds, evaluation by evaluation, with the range over seeds.

    Returns ``step``, ``seconds`` (mean) and, for each metric, ``<metric>``, ``<metric>_min``
    and ``<metric>_max``. A run that stopped early (diverged) simply has no more points; each
    point averages the runs that reached it.
    """
    longest = max(results, key=lambda r: len(r.history["step"]))
    table: dict[str, list[float]] = {"step": list(longest.history["step"]), "seconds": []}
    for metric in metrics:
        table[metric], table[f"{metric}_min"], table[f"{metric}_max"] = [], [], []
    for i in range(len(table["step"])):
        alive = [r for r in results if i < len(r.history["step"])]
        table["seconds"].append(float(np.mean([r.history["seconds"][i] for r in alive])))
        for metric in metrics:
            values = [r.history[metric][i] for r in alive]
            finite = [v for v in values if math.isfinite(v)]
            table[metric].append(float(np.mean(values)) if finite else math.nan)
            table[f"{metric}_min"].append(min(finite) if finite else math.nan)
            table[f"{metric}_max"].append(max(finite) if finite else math.nan)
    return table
