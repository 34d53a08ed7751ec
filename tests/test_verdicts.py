"""The lab's verdicts: a winner only beyond the noise across seeds (optimlab.lab.verdicts)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
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


# --- a winner only on the README's terms, on every path of judge -----------------------------


def test_one_seed_names_no_winner():
    """The probe's case: on one seed, plain SGD at chance (50%) was named the winner over an Adam
    at 92% that was marked unstable, because it was the only stable contender. One seed (or two)
    supports no claim, whoever is stable and however far ahead."""
    finding = judge({"sgd": [-0.5], "adam": [-0.917]}, {"adam": True}, 1)
    assert finding.winner is None and finding.tied == ["sgd"] and finding.unbeaten == ["adam"]
    assert judge({"sgd": [0.5], "adam": [0.1]}, {"adam": True}, 1).winner is None
    for n in (1, 2):
        alone = judge({"a": [0.0] * n, "b": [math.inf] * n}, {"b": True}, n)
        assert alone.winner is None and alone.tied == ["a"]
        ahead = judge({"a": [0.0] * n, "b": [10.0] * n}, {}, n)
        assert ahead.winner is None and ahead.tied == ["a", "b"]


def test_the_only_stable_contender_wins_only_when_it_beats_every_other():
    """On 3 seeds, SGD is the only stable contender but Adam, unstable, scored better on every
    seed: no winner. SGD wins over an Adam that diverged, or that it beats clearly."""
    shaky = {"adam": True}
    sgd = [-0.50, -0.52, -0.49]
    worse = judge({"sgd": sgd, "adam": [-0.91, -0.90, -0.93]}, shaky, 3)
    assert worse.winner is None and worse.tied == ["sgd"] and worse.unbeaten == ["adam"]
    assert judge({"sgd": sgd, "adam": [math.inf] * 3}, shaky, 3).winner == "sgd"
    behind = judge({"sgd": [-0.90, -0.91, -0.92], "adam": sgd}, shaky, 3)
    assert behind.winner == "sgd" and behind.unbeaten == []


#: scores per seed, oriented (lower is better), with ties, steps and divergences (inf)
_SCORES = [0.1, 0.2, 0.25, 0.5, 0.9, 1.0, 3.0, math.inf]


def _contenders(seeds: int):
    """2 to 4 contenders, each with ``seeds`` scores and whether it is unstable."""
    scores = st.lists(st.sampled_from(_SCORES), min_size=seeds, max_size=seeds)
    return st.lists(st.tuples(scores, st.booleans()), min_size=2, max_size=4)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 6).flatmap(_contenders))
def test_a_winner_beats_every_other_on_each_seed_beyond_the_interval(contenders):
    """Whatever the scores and whichever contenders are unstable: a winner is stable, has at
    least 3 seeds, and beats every other contender, unstable ones too, on each seed and by a
    one-sided paired t-test at 2.5% (scipy's), or the other diverged where it did not."""
    scores = {f"c{i}": values for i, (values, _) in enumerate(contenders)}
    shaky = {f"c{i}": flag for i, (_, flag) in enumerate(contenders)}
    seeds = len(contenders[0][0])
    finding = judge(scores, shaky, seeds)
    if finding.winner is None:
        return
    mine = scores[finding.winner]
    assert seeds >= 3 and not shaky[finding.winner] and all(map(math.isfinite, mine))
    for name, theirs in scores.items():
        if name == finding.winner or not all(map(math.isfinite, theirs)):
            continue
        differences = [b - a for a, b in zip(mine, theirs)]
        assert all(d > 0 for d in differences)
        if len(set(differences)) > 1:  # a constant difference has no spread to test
            assert stats.ttest_rel(theirs, mine, alternative="greater").pvalue < 0.025


# --- an accuracy drop is instability only beyond the noise of the validation set ---------------


def test_one_sample_of_a_small_validation_set_is_no_instability():
    """The probe's case: Adam's validation accuracy went from 11/12 to 10/12, one sample, and it
    was marked unstable (8.3 points > 5). Within the noise of 12 samples it is not; on any size
    of validation set, from any accuracy, a drop of one sample never is."""
    assert not unstable(final=10 / 12, best=11 / 12, higher_is_better=True, diverged=False,
                        samples=12)  # fmt: skip
    assert unstable(final=10 / 12, best=11 / 12, higher_is_better=True, diverged=False)
    for n in range(1, 300):
        for k in range(1, n + 1):
            assert not unstable((k - 1) / n, k / n, True, False, samples=n), (k, n)
    # a real collapse on the same 12 samples still counts
    assert unstable(final=3 / 12, best=11 / 12, higher_is_better=True, diverged=False, samples=12)


@pytest.mark.parametrize("samples", [12, 40, 360, 5000])
def test_an_accuracy_drop_counts_beyond_5_points_and_a_two_proportion_test(samples):
    """A drop from the best accuracy to the final one on ``samples`` samples is instability when
    it exceeds 5 points and a one-sided two-proportion z-test at 2.5% (pooled share, scipy's
    normal distribution) rejects that the two are one accuracy."""
    step = max(1, samples // 60)
    for best_k in range(0, samples + 1, step):
        for final_k in range(0, best_k + 1, step):
            best, final = best_k / samples, final_k / samples
            p = (best + final) / 2
            se = math.sqrt(2 * p * (1 - p) / samples)
            rejected = se > 0 and stats.norm.sf((best - final) / se) < 0.025
            expected = best - final > verdicts.UNSTABLE_ACCURACY_DROP and rejected
            assert unstable(final, best, True, False, samples=samples) == expected, (best, final)
    # on a few hundred samples near 97% (the digits' validation set), the 5 points decide
    assert unstable(final=0.91, best=0.97, higher_is_better=True, diverged=False, samples=360)
    assert not unstable(final=0.93, best=0.97, higher_is_better=True, diverged=False, samples=360)


def test_compare_on_one_seed_names_no_winner_and_says_why():
    """The probe's run, through compare_model: 60 samples (12 for validation), SGD and Adam, one
    seed. No verdict names a winner, and the sentence says a claim needs 3 seeds; an optimizer
    whose validation accuracy fell by at most one sample is not called unstable."""
    from optimlab.lab import compare_model

    X = np.random.default_rng(0).normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(int)

    def make(features, outputs):
        return torch.nn.Sequential(
            torch.nn.Linear(features, 8), torch.nn.ReLU(), torch.nn.Linear(8, outputs)
        )

    result = compare_model(make, (X, y), ["sgd", "adam"], seeds=1, epochs=1,
                           lr_grid=(0.1,), refine=False)  # fmt: skip
    (verdict,) = result.verdicts
    assert verdict.winner is None and verdict.winners == [] and " won" not in verdict.sentence
    assert "a claim needs at least 3 seeds" in verdict.sentence
    for (_, name), runs in result.runs.items():
        accuracy = runs[0].history["val_accuracy"]
        if round((max(accuracy) - accuracy[-1]) * 12) <= 1:
            assert name not in verdict.unstable
