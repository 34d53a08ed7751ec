"""Verdicts that the numbers support: a winner only beyond the noise across seeds.

Following the benchmarks that compare training algorithms (Schmidt, Schneider and Hennig,
"Descending through a Crowded Valley", ICML 2021: most differences between optimizers are
within the noise of the seeds), a problem's best optimizer is named only when its advantage
over every other holds across seeds:

* every contender runs the same seeds, so scores pair up seed by seed; the contender with the
  best mean score *wins clearly* over another when it is better on every seed and the mean of
  the paired differences exceeds its 95% confidence half-width (a paired t-test, one-sided at
  2.5%); a claim needs at least :data:`MIN_SEEDS` seeds;
* a winner beats *every* other contender that way, unstable ones included: being the only
  stable contender is no win over one that scored better (an unstable contender that diverged
  scores infinitely worse, and is beaten on every seed); with fewer than :data:`MIN_SEEDS`
  seeds, no contender wins;
* scores spanning orders of magnitude (a gap to the minimum, a loss on a test function) are
  compared in log10, floored at the resolution of float64 arithmetic (:data:`RESOLUTION`);
  accuracies as they are;
* a run that diverged, or ended far worse than its own best along the way (:func:`unstable`:
  10 times its best gap or loss and above the resolution, a million times at any level, or an
  accuracy below its best by more than 5 points and more than the noise of the validation
  set's size allows), is *unstable*, and a contender with an unstable run cannot win;
* otherwise the verdict names the group that ties with the best: every contender not clearly
  worse than it;
* each contender's *sensitivity to the learning rate* is the range of swept rates whose score
  is within a stated margin of its best (:func:`good_rates`: 50% of the validation loss, or
  one order of magnitude of the gap to the minimum);
* two contenders that are one algorithm are said to be: momentum as an average of gradients
  (``form="ema"``) at learning rate ``a`` takes exactly the steps of the heavy ball at
  ``a * (1 - beta)`` (see :class:`optimlab.Momentum`).

>>> clearly_better([1.0, 1.1, 0.9], [2.0, 2.1, 1.8])
True
>>> clearly_better([1.0, 1.1, 0.9], [1.05, 1.0, 1.0])
False
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: the fewest seeds a claim that one optimizer beats another needs
MIN_SEEDS = 3
#: gaps and losses below this are equal (float64 arithmetic near a minimum)
RESOLUTION = 1e-10
#: Student's t, two-sided 95% (one-sided 2.5%), by degrees of freedom (n - 1)
T_975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
    9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120,
    17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000,
}  # fmt: skip
#: a run ending this many times above its best gap or loss is unstable
UNSTABLE_FACTOR = 10.0
#: ... or, below the resolution, this many times (float64 noise near a minimum is far less)
UNSTABLE_GROWTH = 1e6
#: ... or this far below its best accuracy (a fraction), and beyond the noise of the samples
UNSTABLE_ACCURACY_DROP = 0.05
#: the standard normal's 97.5% quantile: a drop beyond the noise at one-sided 2.5%
Z_975 = 1.959964


def t_critical(df: int) -> float:
    """Student's t at 97.5% for ``df`` degrees of freedom (the nearest tabulated at or below)."""
    return T_975[max(k for k in T_975 if k <= df)]


def oriented(score: float, higher_is_better: bool, log_scale: bool) -> float:
    """A score on a scale where lower is better and differences mean the same everywhere."""
    if math.isnan(score):
        return math.inf
    if higher_is_better:
        return -score
    if log_scale:
        return math.log10(max(score, RESOLUTION)) if math.isfinite(score) else math.inf
    return score


def clearly_better(mine: Sequence[float], theirs: Sequence[float]) -> bool:
    """Whether oriented scores ``mine`` (lower is better) beat ``theirs`` beyond the noise:
    paired by seed, better on every seed, and the mean difference beyond the 95% interval."""
    n = len(mine)
    if n < MIN_SEEDS or n != len(theirs):
        return False
    a, b = np.asarray(mine, float), np.asarray(theirs, float)
    if not np.all(np.isfinite(a)):
        return False
    if not np.all(np.isfinite(b)):  # they diverged where we did not
        return True
    differences = b - a
    if not np.all(differences > 0):
        return False
    spread = float(np.std(differences, ddof=1))
    return float(differences.mean()) > t_critical(n - 1) * spread / math.sqrt(n)


def unstable(
    final: float,
    best: float,
    higher_is_better: bool,
    diverged: bool,
    samples: int | None = None,
) -> bool:
    """Whether a run diverged or ended far worse than its own best (see the module docstring).

    An accuracy (``higher_is_better``) measured on ``samples`` validation samples is a share of
    them: it moves in steps of ``1 / samples``, and two evaluations of a model that did not get
    worse differ by the luck of which samples it gets right. The drop from the best to the final
    accuracy counts only when it exceeds both :data:`UNSTABLE_ACCURACY_DROP` and
    :func:`accuracy_noise` (a two-proportion z-test at one-sided 2.5%). On 12 samples, one
    sample (8.3 points) is well within that noise; on any number, one sample never exceeds it;
    on a few hundred samples near 95% accuracy the 5 points decide. Without ``samples`` (the
    size unknown), 5 points decide.
    """
    if diverged or math.isnan(final) or math.isinf(final):
        return True
    if math.isnan(best):
        return False
    if higher_is_better:
        noise = accuracy_noise(best, final, samples) if samples else 0.0
        return best - final > max(UNSTABLE_ACCURACY_DROP, noise)
    if best <= 0:
        return False
    # far above its best and above the resolution; or, at any level, orders of magnitude
    # above it (a gap climbing from 1e-72 back to 1e-42 is moving away from the minimum)
    return final > max(best * UNSTABLE_FACTOR, RESOLUTION) or final > best * UNSTABLE_GROWTH


def accuracy_noise(best: float, final: float, samples: int) -> float:
    """How far two accuracies on the same ``samples`` samples differ by chance alone: 1.96
    standard errors of the difference of two binomial shares, ``sqrt(2 p (1 - p) / samples)``
    at the pooled share ``p`` (their mean), as a two-proportion z-test has it.

    The pooled share is the accuracy both evaluations would estimate if the model had not got
    worse, the hypothesis the test rejects. The two evaluations share their samples, which a
    paired test (McNemar's) would use, but a run keeps only the two shares, not which samples
    changed; the test on the shares alone is what they support. For a drop of one sample it is
    at least ``1.386 / samples`` (least from 100% to one sample below), so one sample is always
    within the noise.

    >>> round(accuracy_noise(11 / 12, 10 / 12, 12), 3)
    0.265
    """
    p = (best + final) / 2
    return Z_975 * math.sqrt(2 * p * (1 - p) / samples)


@dataclass(frozen=True)
class Finding:
    """What the seeds support on one problem."""

    #: the contenders by mean oriented score (stable ones first)
    order: list[str]
    #: the clear winner, or None
    winner: str | None
    #: the contenders tying with the best (the winner alone when there is one)
    tied: list[str]
    #: contenders with an unstable run
    unstable: list[str]
    #: seeds behind each claim
    seeds: int
    #: unstable contenders the best stable one does not clearly beat (so it cannot win)
    unbeaten: list[str] = field(default_factory=list)


def judge(
    scores: dict[str, list[float]],
    unstable_runs: dict[str, bool],
    seeds: int,
    twins: set[frozenset[str]] | None = None,
) -> Finding:
    """Rank contenders by their oriented scores per seed (lower is better), and say whether the
    best stable one beats each other clearly (:func:`clearly_better`) or which ones tie with it.

    The best stable contender wins only when it clearly beats every other, the unstable ones
    too, on at least :data:`MIN_SEEDS` seeds: an unstable contender is not ranked, but a
    contender that it outscored has not shown it is better (the lab once named plain SGD, at
    chance accuracy on one seed, the winner over an Adam at 92% that was marked unstable).

    ``twins`` are pairs that are one algorithm (:func:`same_algorithm`): they differ only by
    rounding, which can favour one of them on every seed by a hair, so neither beats the other.
    """
    twins = twins or set()
    means = {name: float(np.mean(values)) for name, values in scores.items()}
    stable = [n for n in scores if not unstable_runs.get(n)]
    shaky = [n for n in scores if unstable_runs.get(n)]
    order = sorted(stable, key=lambda n: means[n]) + sorted(shaky, key=lambda n: means[n])
    if not stable:
        return Finding(order, None, [], shaky, seeds)
    best = order[0]
    tied = [best] + [
        n
        for n in stable
        if n != best
        and (frozenset((best, n)) in twins or not clearly_better(scores[best], scores[n]))
    ]
    tied.sort(key=lambda n: means[n])
    unbeaten = [n for n in shaky if not clearly_better(scores[best], scores[n])]
    # an unstable contender cannot win, and the best stable one wins only over every other
    clear = len(tied) == 1 and not unbeaten and seeds >= MIN_SEEDS
    return Finding(order, best if clear else None, tied, shaky, seeds, unbeaten)


def same_algorithm(
    a: tuple[str, dict, float], b: tuple[str, dict, float], tolerance: float = 0.35
) -> bool:
    """Whether two tuned contenders ``(optimizer, arguments, lr)`` take the same steps:
    momentum as an average at ``lr`` and the heavy ball at ``lr * (1 - beta)`` (the tuned rates
    agree within ``tolerance`` in log10, about the spacing of the halved grid)."""
    pair = sorted([a, b], key=lambda c: c[1].get("form", "ema"))
    (opt_a, args_a, lr_a), (opt_b, args_b, lr_b) = pair
    if (
        opt_a != "momentum"
        or opt_b != "momentum"
        or args_a.get("nesterov")
        or args_b.get("nesterov")
    ):
        return False
    if args_a.get("form", "ema") != "ema" or args_b.get("form") != "heavy_ball":
        return False
    if args_a.get("bias_correction"):
        return False
    beta = args_a.get("momentum", args_a.get("beta", 0.9))
    if beta != args_b.get("momentum", args_b.get("beta", 0.9)) or not (lr_a > 0 and lr_b > 0):
        return False
    return abs(math.log10(lr_a * (1 - beta)) - math.log10(lr_b)) <= tolerance


#: a learning rate is "good" when its sweep score is within this of the best: 50% on a
#: validation loss; one order of magnitude on a gap to the minimum (floored at the resolution)
LOSS_MARGIN = 0.5
GAP_MARGIN = 10.0


def good_rates(scores: dict[float, float], minimum: float | None) -> list[float]:
    """The swept learning rates whose score is within the stated margin of the best.

    ``scores``: learning rate -> final selection metric (lower is better; ``inf`` diverged);
    ``minimum``: the function's value at its minimum for test functions (the margin is then on
    the gap, ``f - f*``), None for a validation loss.
    """
    finite = {lr: s for lr, s in scores.items() if math.isfinite(s)}
    if not finite:
        return []
    best = min(finite.values())
    if minimum is not None:
        limit = minimum + max((best - minimum) * GAP_MARGIN, RESOLUTION)
    else:
        limit = best + abs(best) * LOSS_MARGIN
    return sorted(lr for lr, s in finite.items() if s <= limit)


def decades(rates: list[float]) -> float:
    """How many powers of ten the good rates span (0 for one rate)."""
    return math.log10(max(rates) / min(rates)) if rates else math.nan


#: the ratios at which :func:`performance_profile` is read
PROFILE_RATIOS = (1.0, 1.5, 2.0, 4.0, 10.0, 100.0)


def performance_profile(
    costs: dict[str, dict[str, float]], ratios: Sequence[float] = PROFILE_RATIOS
) -> dict[str, list[float]]:
    """Dolan and Moré's performance profile (Math. Programming 2002; AlgoPerf aggregates with
    it): for each contender, the fraction of problems on which its cost is within a factor
    ``tau`` of the best contender's, for each ``tau`` of ``ratios``.

    ``costs[problem][contender]``: a positive number, lower is better (a gap floored at the
    resolution, an error rate, a loss); ``inf`` for an unstable or diverged contender.

    >>> performance_profile({"p": {"a": 1.0, "b": 2.0}, "q": {"a": 3.0, "b": 1.0}}, (1, 2, 3))
    {'a': [0.5, 0.5, 1.0], 'b': [0.5, 1.0, 1.0]}
    """
    names = sorted({n for row in costs.values() for n in row})
    profile = {n: [0.0] * len(ratios) for n in names}
    for row in costs.values():
        best = min(row.values())
        for name, cost in row.items():
            ratio = cost / best if math.isfinite(cost) and best > 0 else math.inf
            if best == cost and math.isfinite(cost):
                ratio = 1.0
            for k, tau in enumerate(ratios):
                if ratio <= tau:
                    profile[name][k] += 1 / len(costs)
    return {n: [round(v, 12) for v in values] for n, values in profile.items()}
