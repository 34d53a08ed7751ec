"""The lab's verdicts: a winner only beyond the noise across seeds (optimlab.lab.verdicts)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

import optimlab
from optimlab.lab import verdicts
from optimlab.lab.verdicts import clearly_better, judge, same_algorithm, unstable


@pytest.mark.parametrize("df", [1, 2, 3, 5, 9, 20, 30, 60])
def test_t_critical_values_are_students(df):
    assert verdicts.t_critical(df) == pytest.approx(stats.t.ppf(0.975, df), abs=6e-4)


def test_a_clear_advantage_needs_every_seed_and_the_interval():
    assert clearly_better([1.0, 1.1, 0.9], [2.0, 2.1, 1.8])
    assert not clearly_better([1.0, 1.1, 0.9], [1.05, 1.0, 1.0])  # not on every seed
    assert not clearly_better([1.0, 1.0], [2.0, 2.0])  # two seeds support no claim
    # better on every seed, but by amounts too uneven for the interval to exclude 0
    assert not clearly_better([1.0, 1.0, 1.0], [1.01, 1.02, 3.0])
    # the paired test agrees with scipy's on what it decides
    mine, theirs = [0.50, 0.61, 0.55, 0.58], [0.60, 0.66, 0.63, 0.70]
    result = stats.ttest_rel(theirs, mine, alternative="greater")
    assert clearly_better(mine, theirs) == (result.pvalue < 0.025)
    assert clearly_better([1.0, 1.0, 1.0], [math.inf] * 3)  # they diverged


def test_noise_gives_no_winner_and_names_the_tie():
    scores = {"a": [0.971, 0.969, 0.975], "b": [0.972, 0.966, 0.974], "c": [0.90, 0.91, 0.89]}
    oriented = {k: [-v for v in vs] for k, vs in scores.items()}
    finding = judge(oriented, {}, 3)
    assert finding.winner is None and set(finding.tied) == {"a", "b"}
    clear = judge({"a": [1.0, 1.1, 0.9], "b": [2.0, 2.1, 1.8]}, {}, 3)
    assert clear.winner == "a" and clear.tied == ["a"]


def test_an_unstable_run_cannot_win():
    finding = judge({"rmsprop": [-42.0] * 3, "adam": [-3.0] * 3}, {"rmsprop": True}, 3)
    assert finding.winner != "rmsprop" and finding.unstable == ["rmsprop"]
    assert unstable(final=0.014, best=3e-72, higher_is_better=False, diverged=False)
    assert unstable(final=1.5e-42, best=3e-72, higher_is_better=False, diverged=False)
    assert not unstable(final=3e-31, best=1e-32, higher_is_better=False, diverged=False)
    assert not unstable(final=1e-9, best=5e-10, higher_is_better=False, diverged=False)
    assert unstable(final=0.90, best=0.97, higher_is_better=True, diverged=False)
    assert unstable(final=math.nan, best=0.1, higher_is_better=False, diverged=True)


def test_average_momentum_and_heavy_ball_are_one_algorithm():
    ema = ("momentum", {}, 0.1)
    heavy = ("momentum", {"form": "heavy_ball"}, 0.01)
    assert same_algorithm(ema, heavy) and same_algorithm(heavy, ema)
    assert not same_algorithm(ema, ("momentum", {"form": "heavy_ball"}, 0.1))
    assert not same_algorithm(ema, ("momentum", {"form": "heavy_ball", "nesterov": True}, 0.01))
    assert not same_algorithm(ema, ("adam", {}, 0.01))
    # ... which is what the two forms compute: the same points on a quadratic
    points = []
    for form, lr in [("ema", 0.1), ("heavy_ball", 0.1 * (1 - 0.9))]:
        w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
        opt = optimlab.Momentum([w], lr=lr, form=form, momentum=0.9)
        path = []
        for _ in range(30):
            opt.zero_grad()
            (w * w * torch.tensor([1.0, 10.0], dtype=torch.float64)).sum().backward()
            opt.step()
            path.append(w.detach().clone())
        points.append(torch.stack(path))
    torch.testing.assert_close(points[0], points[1], rtol=1e-12, atol=1e-12)


def test_good_learning_rates_are_within_the_stated_margin():
    from optimlab.lab.verdicts import decades, good_rates

    # a validation loss: within 50% of the best
    scores = {1e-3: 0.50, 1e-2: 0.31, 1e-1: 0.30, 1.0: math.inf}
    assert good_rates(scores, None) == [1e-2, 1e-1] and decades([1e-2, 1e-1]) == 1
    # a gap to f* = -1: within a factor 10 of the best gap
    scores = {1e-3: -1 + 5e-3, 1e-2: -1 + 1e-3, 1e-1: -1 + 2e-2}
    assert good_rates(scores, -1.0) == [1e-3, 1e-2]
    assert good_rates({0.1: math.inf}, None) == [] and math.isnan(decades([]))


def test_the_performance_profile_is_dolan_and_mores():
    from optimlab.lab.verdicts import performance_profile

    costs = {
        "p1": {"a": 1.0, "b": 2.0, "c": math.inf},
        "p2": {"a": 4.0, "b": 1.0, "c": 1.5},
        "p3": {"a": 1.0, "b": 1.0, "c": 30.0},
    }
    # rho_s(tau) = |{p : r_ps <= tau}| / |P|, r_ps = t_ps / min_s t_ps (Dolan and Moré, eq. 1)
    ratios = (1.0, 2.0, 4.0, 100.0)
    expected = {}
    for s in ("a", "b", "c"):
        r = [costs[p][s] / min(costs[p].values()) for p in costs]
        expected[s] = [sum(x <= tau for x in r) / 3 for tau in ratios]
    got = performance_profile(costs, ratios)
    for s in expected:
        assert got[s] == pytest.approx(expected[s])


def test_one_algorithm_in_two_forms_never_beats_itself():
    """Momentum averaged and heavy ball at matching rates differ by rounding alone, which can
    favour one on every seed by a hair (it did under ATEN_CPU_CAPABILITY=default): twins tie."""
    scores = {"heavy_ball": [-4.3300001, -4.3400001, -4.3500001], "momentum": [-4.33, -4.34, -4.35],
              "sgd": [-0.1, -0.12, -0.13]}  # fmt: skip
    assert clearly_better(scores["heavy_ball"], scores["momentum"])  # a hair, on every seed
    plain = judge(scores, {}, 3)
    assert plain.winner == "heavy_ball"
    finding = judge(scores, {}, 3, {frozenset(("heavy_ball", "momentum"))})
    assert finding.winner is None and finding.tied == ["heavy_ball", "momentum"]
