"""Tests of optimlab.schedules against hand-computed values, torch's schedulers and Keras' formulas.

Every expected number here is computed from the formula written out in the test, from torch's
own scheduler classes, or from Keras' decay functions transcribed below, never from the module
under test.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import warnings
from typing import ClassVar

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim import lr_scheduler as tl

from optimlab.schedules import (
    SCHEDULES,
    ReduceOnPlateau,
    Schedule,
    constant,
    cosine_decay,
    drive,
    exponential_decay,
    from_dict,
    from_spec,
    inverse_time_decay,
    join,
    linear_warmup,
    multistep,
    one_cycle,
    piecewise_constant,
    polynomial_decay,
    step_decay,
    warm_restarts,
)

PI = math.pi


def _cos_anneal(start, end, frac):
    """Half-cosine from start (frac=0) to end (frac=1), written out for the tables."""
    return end + (start - end) * (1 + math.cos(PI * frac)) / 2


# ---------------------------------------------------------------------------------------------
# tables of hand-computed values at and around every boundary

TABLES = [
    (constant(0.3), {0: 0.3, 1: 0.3, 10**9: 0.3}),
    (constant(2), {0: 2.0, 5: 2.0}),
    (
        step_decay(0.1, 0.5, 10),
        {0: 0.1, 9: 0.1, 10: 0.05, 11: 0.05, 19: 0.05, 20: 0.025, 21: 0.025, 30: 0.0125},
    ),
    (step_decay(1.0, 0.1, 1), {0: 1.0, 1: 0.1, 2: 0.01, 3: 0.001}),
    (
        multistep(0.1, [5, 8], 0.1),
        {0: 0.1, 4: 0.1, 5: 0.01, 6: 0.01, 7: 0.01, 8: 0.001, 9: 0.001, 10**6: 0.001},
    ),
    (multistep(1.0, [0], 0.5), {0: 0.5, 1: 0.5}),
    (multistep(1.0, [], 0.5), {0: 1.0, 100: 1.0}),
    (
        exponential_decay(2.0, 0.5, 4),
        {0: 2.0, 1: 2.0 * 0.5**0.25, 2: 2.0 * 0.5**0.5, 4: 1.0, 6: 2.0 * 0.5**1.5, 8: 0.5},
    ),
    (exponential_decay(2.0, 0.5, 4, staircase=True), {0: 2.0, 3: 2.0, 4: 1.0, 7: 1.0, 8: 0.5}),
    (
        inverse_time_decay(1.0, 10, 0.5),
        {0: 1.0, 1: 1 / 1.05, 10: 1 / 1.5, 15: 1 / 1.75, 20: 0.5},
    ),
    (
        inverse_time_decay(1.0, 10, 0.5, staircase=True),
        {0: 1.0, 9: 1.0, 10: 1 / 1.5, 19: 1 / 1.5, 20: 0.5, 21: 0.5},
    ),
    (inverse_time_decay(3.0, 1), {0: 3.0, 1: 1.5, 2: 1.0, 5: 0.5}),
    (
        piecewise_constant([10, 20], [1.0, 0.5, 0.1]),
        {0: 1.0, 9: 1.0, 10: 1.0, 11: 0.5, 19: 0.5, 20: 0.5, 21: 0.1, 10**9: 0.1},
    ),
    # the notes' "0.01 for the first 1000 steps, then 0.001": steps 0..999 are the first 1000
    (piecewise_constant([999], [0.01, 0.001]), {0: 0.01, 999: 0.01, 1000: 0.001}),
    (piecewise_constant([0], [0.3, 0.2]), {0: 0.3, 1: 0.2}),
    (piecewise_constant([], [0.7]), {0: 0.7, 50: 0.7}),
    (
        polynomial_decay(1.0, 10, 0.1, 2.0),
        {0: 1.0, 1: 0.9 * 0.81 + 0.1, 5: 0.9 * 0.25 + 0.1, 9: 0.9 * 0.01 + 0.1, 10: 0.1, 11: 0.1},
    ),
    (polynomial_decay(0.5, 4), {0: 0.5, 1: 0.375, 2: 0.25, 3: 0.125, 4: 0.0, 5: 0.0}),
    (
        cosine_decay(1.0, 10, 0.2),
        {
            0: 1.0,
            1: 0.2 + 0.8 * (1 + math.cos(0.1 * PI)) / 2,
            5: 0.6,
            9: 0.2 + 0.8 * (1 + math.cos(0.9 * PI)) / 2,
            10: 0.2,
            11: 0.2,
            1000: 0.2,
        },
    ),
    (linear_warmup(0.5, 4, 0.2), {0: 0.1, 1: 0.2, 2: 0.3, 3: 0.4, 4: 0.5, 5: 0.5, 99: 0.5}),
    (
        # target = inner(4) = 0.5; the inner schedule sees the absolute step afterwards
        linear_warmup(step_decay(1.0, 0.5, 4), 4),
        {0: 0.0, 1: 0.125, 2: 0.25, 3: 0.375, 4: 0.5, 7: 0.5, 8: 0.25},
    ),
    (linear_warmup(0.5, 0, 0.3), {0: 0.5, 1: 0.5}),
    (linear_warmup(0.5, 1, 0.3), {0: 0.15, 1: 0.5}),
    (
        warm_restarts(1.0, 4),
        {0: 1.0, 1: _cos_anneal(1, 0, 0.25), 2: 0.5, 3: _cos_anneal(1, 0, 0.75), 4: 1.0, 8: 1.0},
    ),
    (
        # periods 4, 8, 16: restarts at 4, 12 and 28
        warm_restarts(1.0, 4, 2, 0.1),
        {
            3: _cos_anneal(1, 0.1, 3 / 4),
            4: 1.0,
            5: _cos_anneal(1, 0.1, 1 / 8),
            11: _cos_anneal(1, 0.1, 7 / 8),
            12: 1.0,
            27: _cos_anneal(1, 0.1, 15 / 16),
            28: 1.0,
            29: _cos_anneal(1, 0.1, 1 / 32),
        },
    ),
    (
        # initial 0.1, final 0.001; phases end at steps 2 (0.25*12 - 1) and 11
        one_cycle(1.0, 12, pct_start=0.25, div_factor=10.0, final_div_factor=100.0),
        {
            0: 0.1,
            1: _cos_anneal(0.1, 1.0, 0.5),
            2: 1.0,
            3: _cos_anneal(1.0, 0.001, 1 / 9),
            10: _cos_anneal(1.0, 0.001, 8 / 9),
            11: 0.001,
            12: 0.001,
            10**6: 0.001,
        },
    ),
    (
        one_cycle(1.0, 12, 0.25, 10.0, 100.0, anneal="linear"),
        {0: 0.1, 1: 0.55, 2: 1.0, 3: 1.0 - 0.999 / 9, 11: 0.001, 13: 0.001},
    ),
    (
        # three phases end at 2, 4 (2*0.25*12 - 2) and 11
        one_cycle(1.0, 12, 0.25, 10.0, 100.0, three_phase=True),
        {
            0: 0.1,
            2: 1.0,
            3: _cos_anneal(1.0, 0.1, 0.5),
            4: 0.1,
            5: _cos_anneal(0.1, 0.001, 1 / 7),
            11: 0.001,
        },
    ),
    (
        join([constant(1.0), step_decay(0.5, 0.5, 2), constant(0.1)], [3, 7]),
        {0: 1.0, 2: 1.0, 3: 0.5, 4: 0.5, 5: 0.25, 6: 0.25, 7: 0.1, 100: 0.1},
    ),
    (
        join([linear_warmup(1.0, 2), cosine_decay(1.0, 4)], [2]),
        {0: 0.0, 1: 0.5, 2: 1.0, 3: _cos_anneal(1, 0, 0.25), 4: 0.5, 6: 0.0, 7: 0.0},
    ),
]


@pytest.mark.parametrize(("schedule", "expected"), TABLES, ids=lambda v: getattr(v, "name", ""))
def test_values_at_and_around_boundaries(schedule, expected):
    got = {t: schedule(t) for t in expected}
    # Schedules are Python float arithmetic (no vector unit): a closed form against another
    # closed form of a few operations, a few ulp apart; rel=1e-12 is far above that and far
    # below any wrong step or boundary (they move a value by 1e-3 or more)
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert all(type(v) is float for v in got.values())


def test_every_schedule_name_is_in_some_table():
    tabled = {s.name for s, _ in TABLES}
    assert tabled == set(SCHEDULES) - {"reduce_on_plateau"}


# ---------------------------------------------------------------------------------------------
# parity with torch's schedulers


def _sgd(lr=0.1, groups=1):
    params = [{"params": [torch.zeros(1, requires_grad=True)]} for _ in range(groups)]
    return torch.optim.SGD(params, lr=lr)


def _torch_lrs(make, steps, lr=0.1):
    """The lr torch's scheduler applies at steps 0..steps-1, driven the normal way."""
    opt = _sgd(lr)
    scheduler = make(opt)
    out = []
    for t in range(steps):
        out.append(opt.param_groups[0]["lr"])
        if t < steps - 1:
            opt.step()
            scheduler.step()
    return out


def _torch_closed_form(make, steps, lr=0.1):
    """torch's own closed form ``_get_closed_form_lr`` at steps 0..steps-1 (no drift)."""
    scheduler = make(_sgd(lr))
    out = []
    for t in range(steps):
        scheduler.last_epoch = t
        out.append(scheduler._get_closed_form_lr()[0])
    return out


TORCH_PARITY = [
    ("StepLR", step_decay(0.1, 0.5, 7), lambda o: tl.StepLR(o, step_size=7, gamma=0.5), 300),
    (
        "MultiStepLR",
        multistep(0.1, [30, 80, 81, 200], 0.3),
        lambda o: tl.MultiStepLR(o, milestones=[30, 80, 81, 200], gamma=0.3),
        300,
    ),
    ("ExponentialLR", exponential_decay(0.1, 0.99, 1), lambda o: tl.ExponentialLR(o, 0.99), 300),
    (
        "CosineAnnealingLR",
        cosine_decay(0.1, 300, 0.001),
        lambda o: tl.CosineAnnealingLR(o, T_max=300, eta_min=0.001),
        301,
    ),
    (
        "CosineAnnealingLR-eta0",
        cosine_decay(0.1, 97),
        lambda o: tl.CosineAnnealingLR(o, T_max=97),
        98,
    ),
    (
        "CosineAnnealingWarmRestarts",
        warm_restarts(0.1, 10, 2, 1e-4),
        lambda o: tl.CosineAnnealingWarmRestarts(o, T_0=10, T_mult=2, eta_min=1e-4),
        300,
    ),
    (
        "CosineAnnealingWarmRestarts-mult1",
        warm_restarts(0.1, 7),
        lambda o: tl.CosineAnnealingWarmRestarts(o, T_0=7),
        300,
    ),
    (
        "PolynomialLR",
        polynomial_decay(0.1, 120, 0.0, 0.9),
        lambda o: tl.PolynomialLR(o, total_iters=120, power=0.9),
        300,
    ),
    (
        "LinearLR",
        linear_warmup(0.1, 50, 0.1),
        lambda o: tl.LinearLR(o, start_factor=0.1, total_iters=50),
        300,
    ),
]

ONE_CYCLE_CASES = [
    dict(total_steps=300),
    dict(total_steps=300, pct_start=0.25, anneal="linear"),
    dict(total_steps=300, pct_start=0.4, three_phase=True, div_factor=10.0),
    dict(total_steps=257, pct_start=0.1, final_div_factor=100.0, three_phase=True, anneal="linear"),
    # odd corners torch still computes: a warm-up shorter than one step, pct_start past 0.5
    dict(total_steps=3, pct_start=0.2),
    dict(total_steps=3, pct_start=0.2, three_phase=True),
    dict(total_steps=10, pct_start=0.8, three_phase=True),
    dict(total_steps=7, pct_start=1.0),
]


def _torch_one_cycle(kw):
    torch_kw = {k: v for k, v in kw.items() if k != "anneal"}
    anneal = kw.get("anneal", "cos")
    return lambda o: tl.OneCycleLR(
        o, max_lr=0.5, anneal_strategy=anneal, cycle_momentum=False, **torch_kw
    )


TORCH_PARITY += [
    (f"OneCycleLR-{kw}", one_cycle(0.5, **kw), _torch_one_cycle(kw), kw["total_steps"])
    for kw in ONE_CYCLE_CASES
]


@pytest.mark.parametrize(
    ("schedule", "make", "steps"),
    [p[1:] for p in TORCH_PARITY],
    ids=[p[0] for p in TORCH_PARITY],
)
def test_matches_torch_scheduler_driven_step_by_step(schedule, make, steps):
    expected = _torch_lrs(make, steps)
    ours = [schedule(t) for t in range(steps)]
    # torch's recursive forms accumulate rounding: a few ulp per step over at most 300 steps,
    # about 1e3 ulp = 2e-13 (measured: 10 ulp); rel=1e-9 is far above it and far below any bug
    assert ours == pytest.approx(expected, rel=1e-9, abs=1e-15)


CLOSED_FORM = [p for p in TORCH_PARITY if hasattr(p[2](_sgd()), "_get_closed_form_lr")]


@pytest.mark.parametrize(
    ("schedule", "make", "steps"),
    [p[1:] for p in CLOSED_FORM],
    ids=[p[0] for p in CLOSED_FORM],
)
def test_matches_torch_closed_form(schedule, make, steps):
    expected = _torch_closed_form(make, steps)
    # one closed form against another: a few ulp (see test_values_at_and_around_boundaries)
    assert [schedule(t) for t in range(steps)] == pytest.approx(expected, rel=1e-12, abs=1e-17)


def test_closed_form_parity_covers_the_decays():
    names = {p[0] for p in CLOSED_FORM}
    assert {"StepLR", "MultiStepLR", "CosineAnnealingLR", "PolynomialLR", "LinearLR"} <= names


def test_cosine_decay_stays_at_end_lr_where_torch_rises_again():
    # documented difference: torch's closed form keeps following the cosine past T_max
    torch_lrs = _torch_closed_form(lambda o: tl.CosineAnnealingLR(o, T_max=10), 21)
    assert torch_lrs[20] == pytest.approx(0.1)
    assert cosine_decay(0.1, 10)(20) == 0.0


def test_polynomial_decay_with_end_lr_zero_is_torch_polynomial_lr_exactly():
    for power in (0.5, 1.0, 2.0, 3.7):
        expected = _torch_closed_form(lambda o, p=power: tl.PolynomialLR(o, 40, p), 60)
        assert [polynomial_decay(0.1, 40, 0.0, power)(t) for t in range(60)] == expected


# ---------------------------------------------------------------------------------------------
# Keras' decay functions, transcribed from keras/optimizers/schedules/learning_rate_schedule.py


def keras_inverse_time_decay(initial_learning_rate, decay_steps, decay_rate, staircase, step):
    global_step_recomp = float(step)
    p = global_step_recomp / decay_steps
    if staircase:
        p = math.floor(p)
    const = 1.0
    denom = const + decay_rate * p
    return initial_learning_rate / denom


def keras_piecewise_constant(boundaries, values, step):
    x = step
    pred_fn_pairs = [(x <= boundaries[0], values[0]), (x > boundaries[-1], values[-1])]
    for low, high, v in zip(boundaries[:-1], boundaries[1:], values[1:-1], strict=True):
        pred_fn_pairs.append((x > low and x <= high, v))
    matches = [v for pred, v in pred_fn_pairs if pred]
    assert len(matches) == 1  # keras' tf.case(exclusive=True)
    return matches[0]


def keras_polynomial_decay(initial_learning_rate, decay_steps, end_learning_rate, power, step):
    global_step_recomp = min(float(step), float(decay_steps))
    p = global_step_recomp / decay_steps
    return (initial_learning_rate - end_learning_rate) * (1 - p) ** power + end_learning_rate


def keras_exponential_decay(initial_learning_rate, decay_steps, decay_rate, staircase, step):
    p = float(step) / decay_steps
    if staircase:
        p = math.floor(p)
    return initial_learning_rate * math.pow(decay_rate, p)


KERAS_STEPS = list(range(0, 130)) + [999, 1000, 1001, 5000]
# The Keras transcriptions compute the same closed forms in another order (Python floats, no
# vector unit): a few ulp apart, so rel=1e-12 below is far above rounding, far below a bug.


@pytest.mark.parametrize("staircase", [False, True])
@pytest.mark.parametrize(("decay_steps", "decay_rate"), [(1, 1.0), (10, 0.5), (7, 3.0), (3, 0.0)])
def test_inverse_time_decay_matches_keras(decay_steps, decay_rate, staircase):
    s = inverse_time_decay(0.1, decay_steps, decay_rate, staircase)
    expected = [
        keras_inverse_time_decay(0.1, decay_steps, decay_rate, staircase, t) for t in KERAS_STEPS
    ]
    assert [s(t) for t in KERAS_STEPS] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("boundaries", "values"),
    [
        ([10, 20], [1.0, 0.5, 0.1]),
        ([1000], [0.01, 0.001]),
        ([0, 1, 2, 50, 120], [6, 5, 4, 3, 2, 1]),
    ],
)
def test_piecewise_constant_matches_keras(boundaries, values):
    s = piecewise_constant(boundaries, values)
    expected = [float(keras_piecewise_constant(boundaries, values, t)) for t in KERAS_STEPS]
    assert [s(t) for t in KERAS_STEPS] == expected


@pytest.mark.parametrize(("end_lr", "power"), [(0.0, 1.0), (0.01, 2.0), (0.05, 0.5), (0.2, 1.0)])
def test_polynomial_decay_matches_keras(end_lr, power):
    s = polynomial_decay(0.1, 100, end_lr, power)
    expected = [keras_polynomial_decay(0.1, 100, end_lr, power, t) for t in KERAS_STEPS]
    assert [s(t) for t in KERAS_STEPS] == pytest.approx(expected, rel=1e-12, abs=1e-17)


@pytest.mark.parametrize("staircase", [False, True])
def test_exponential_decay_matches_keras(staircase):
    s = exponential_decay(0.1, 0.96, 10, staircase)
    expected = [keras_exponential_decay(0.1, 10, 0.96, staircase, t) for t in KERAS_STEPS]
    assert [s(t) for t in KERAS_STEPS] == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# the driver


def test_driver_sets_every_group_at_construction_and_each_step():
    s = step_decay(0.1, 0.5, 3)
    opt = _sgd(lr=123.0, groups=3)
    driver = drive(opt, s)
    assert [g["lr"] for g in opt.param_groups] == [0.1] * 3
    for t in range(1, 12):
        opt.step()
        driver.step()
        expected = 0.1 * 0.5 ** (t // 3)
        # rel=1e-15: powers of 0.5 are exact, the product with 0.1 rounds once
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([expected] * 3, rel=1e-15)
        assert driver.get_last_lr() == [g["lr"] for g in opt.param_groups]
        assert driver.current_step == t
    assert driver.state_dict() == {"step": 11}


def test_driver_state_round_trip_restores_exact_lr_on_a_fresh_optimizer():
    s = join([linear_warmup(0.1, 10), cosine_decay(0.1, 90, 1e-4)], [10])
    opt = _sgd()
    driver = drive(opt, s)
    for _ in range(37):
        opt.step()
        driver.step()
    state = json.loads(json.dumps(driver.state_dict()))

    fresh = _sgd(lr=5.0)
    resumed = drive(fresh, s)
    assert fresh.param_groups[0]["lr"] == s(0)
    resumed.load_state_dict(state)
    assert fresh.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == s(37)
    also = drive(_sgd(lr=5.0), s, step=37)
    assert also.get_last_lr() == [s(37)]
    for _ in range(20):
        driver.step()
        resumed.step()
        assert fresh.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert resumed.state_dict() == {"step": 57}


def test_driver_does_not_patch_optimizer_step():
    opt = _sgd()
    before = opt.step
    drive(opt, constant(0.1)).step()
    assert "step" not in vars(opt)
    assert opt.step == before
    assert opt.step.__func__ is type(opt).step


def test_driver_per_group_schedules():
    opt = _sgd(groups=2)
    a, b = constant(0.5), step_decay(1.0, 0.1, 2)
    driver = drive(opt, [a, b])
    for t in range(6):
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.5, 0.1 ** (t // 2)])
        driver.step()
    with pytest.raises(ValueError, match="got 1 schedules for 2 param groups"):
        drive(opt, [a])


def test_driver_relative_multiplies_each_groups_initial_lr_and_survives_resume():
    params = [torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)]
    opt = torch.optim.SGD([{"params": [params[0]], "lr": 0.1}, {"params": [params[1]], "lr": 0.02}])
    factor = linear_warmup(1.0, 10)
    driver = drive(opt, factor, relative=True)
    for _ in range(4):
        driver.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1 * 0.4, 0.02 * 0.4])

    fresh = torch.optim.SGD(
        [{"params": [params[0]], "lr": 0.1}, {"params": [params[1]], "lr": 0.02}]
    )
    fresh.load_state_dict(opt.state_dict())  # carries initial_lr, and lr = 0.04 / 0.008
    resumed = drive(fresh, factor, relative=True)
    resumed.load_state_dict(driver.state_dict())
    assert [g["lr"] for g in fresh.param_groups] == [g["lr"] for g in opt.param_groups]


class _PlainSGD(torch.optim.Optimizer):
    """A minimal optimizer subclass, to check the driver relies on nothing but param_groups."""

    def __init__(self, params, lr=1.0):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"])


def test_driver_works_with_optimizer_subclasses_and_tensor_lr():
    p = torch.ones(1, requires_grad=True)
    opt = _PlainSGD([p])
    driver = drive(opt, step_decay(0.5, 0.5, 1))
    p.grad = torch.ones(1)
    opt.step()
    driver.step()
    opt.step()
    assert p.item() == pytest.approx(1.0 - 0.5 - 0.25)

    q = torch.zeros(1, requires_grad=True)
    adam = torch.optim.Adam([q], lr=torch.tensor(0.01))
    lr_tensor = adam.param_groups[0]["lr"]
    driver = drive(adam, constant(0.003))
    assert adam.param_groups[0]["lr"] is lr_tensor  # updated in place, as torch requires
    assert lr_tensor.item() == pytest.approx(0.003)


def test_driver_pushes_reduce_on_plateau_updates():
    plateau = ReduceOnPlateau(0.1, factor=0.5, patience=0)
    opt = _sgd(lr=1.0)
    driver = drive(opt, plateau)
    assert opt.param_groups[0]["lr"] == 0.1
    plateau.update(1.0)
    plateau.update(2.0)
    driver.apply()
    assert opt.param_groups[0]["lr"] == 0.05


# ---------------------------------------------------------------------------------------------
# ReduceOnPlateau against torch.optim.lr_scheduler.ReduceLROnPlateau

METRICS = (
    [10.0, 9.0, 8.0, 8.0, 8.0, 8.0, 7.9995, 8.1, 7.9, 7.9, 7.9]  # 7.9995 is within rel 1e-4
    + [7.9, 7.9, 7.9, 7.9, 6.0, 5.0, 5.0, 5.0, 5.0001, 5.0, 5.0, 4.9999]
    + [4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 3.0, 3.5, 3.5, 3.5, 3.5, 3.5]
    + [2.0, 2.0, 1.9999, 2.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    + [0.5, 0.5, 0.5, 0.5, float("nan"), 0.5, 0.5, 0.4, 0.4, 0.4]
)

PLATEAU_CONFIGS = [
    dict(factor=0.5, patience=3),
    dict(factor=0.5, patience=2, cooldown=2),
    dict(factor=0.1, patience=1, threshold=0.05, threshold_mode="abs", min_lr=1e-3),
    dict(factor=0.3, patience=0, threshold=0.0, cooldown=1),
    dict(factor=0.5, patience=2, mode="max"),
    dict(factor=0.5, patience=1, mode="max", threshold=0.5, threshold_mode="abs", cooldown=3),
    # lr small enough that the eps = 1e-8 rule stops the reductions
    dict(factor=0.5, patience=0, lr=1e-7),
]


@pytest.mark.parametrize("config", PLATEAU_CONFIGS, ids=str)
def test_reduce_on_plateau_matches_torch_with_resume_midway(config):
    config = dict(config)
    lr = config.pop("lr", 0.1)
    metrics = [20.0 - m for m in METRICS] if config.get("mode") == "max" else METRICS
    assert len(metrics) == 60

    opt = _sgd(lr)
    reference = tl.ReduceLROnPlateau(opt, **config)
    ours = ReduceOnPlateau(lr, **config)
    seen = []
    for i, m in enumerate(metrics):
        if i == 30:
            state = copy.deepcopy(ours.state_dict())
            ours = ReduceOnPlateau(lr, **config)
            ours.load_state_dict(state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference.step(m)
        got = ours.update(torch.tensor(m) if i % 7 == 0 else m)
        assert got == opt.param_groups[0]["lr"], f"update {i} (metric {m})"
        assert ours(i) == got
        seen.append(got)
    assert len(set(seen)) >= 3, "the metric sequence should trigger several reductions"


def test_reduce_on_plateau_serializes_config_and_state_separately():
    s = ReduceOnPlateau(0.1, factor=0.5, patience=1, mode="max", cooldown=2)
    for m in (1.0, 0.5, 0.5, 0.5):
        s.update(m)
    rebuilt = from_dict(json.loads(json.dumps(s.to_dict())))
    assert isinstance(rebuilt, ReduceOnPlateau)
    assert rebuilt.to_dict() == s.to_dict()
    assert rebuilt.lr == 0.1 and s.lr == 0.05
    rebuilt.load_state_dict(s.state_dict())
    assert rebuilt.state_dict() == s.state_dict()
    assert [rebuilt.update(m) for m in (0.1, 0.1, 0.1)] == [s.update(m) for m in (0.1, 0.1, 0.1)]


# ---------------------------------------------------------------------------------------------
# properties

lrs = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)
rates = st.floats(min_value=1e-6, max_value=1.0)
periods = st.integers(min_value=1, max_value=5000)
steps = st.integers(min_value=0, max_value=10**7)


def increasing(min_value, size=None, max_size=5):
    sizes = dict(min_size=size, max_size=size) if size is not None else dict(max_size=max_size)
    return st.lists(st.integers(min_value, 100_000), unique=True, **sizes).map(sorted)


one_cycles = (
    st.tuples(lrs, periods, st.floats(0.0, 1.0))
    .filter(lambda a: float(a[1] * a[2]) - 1 != 0)  # rejected: torch divides by zero there
    .flatmap(
        lambda a: st.builds(
            one_cycle,
            st.just(a[0]),
            st.just(a[1]),
            st.just(a[2]),
            st.floats(0.5, 100.0),
            st.floats(0.5, 1e5),
            st.sampled_from(["cos", "linear"]),
            st.booleans(),
        )
    )
)

simple_schedules = st.one_of(
    st.builds(constant, lrs),
    st.builds(step_decay, lrs, rates, periods),
    st.builds(multistep, lrs, increasing(0), rates),
    st.builds(exponential_decay, lrs, rates, periods, st.booleans()),
    st.builds(inverse_time_decay, lrs, periods, st.floats(0.0, 100.0), st.booleans()),
    increasing(0).flatmap(
        lambda b: st.builds(
            piecewise_constant, st.just(b), st.lists(lrs, min_size=len(b) + 1, max_size=len(b) + 1)
        )
    ),
    st.builds(polynomial_decay, lrs, periods, lrs, st.floats(0.01, 10.0)),
    st.builds(cosine_decay, lrs, periods, lrs),
    st.builds(warm_restarts, lrs, periods, st.integers(1, 4), lrs),
    one_cycles,
)


def _joins(inner):
    return st.lists(inner, min_size=1, max_size=4).flatmap(
        lambda ss: st.builds(join, st.just(ss), increasing(1, size=len(ss) - 1))
    )


all_schedules = st.recursive(
    simple_schedules,
    lambda inner: st.one_of(
        st.builds(linear_warmup, st.one_of(lrs, inner), st.integers(0, 2000), st.floats(0.0, 1.0)),
        _joins(inner),
    ),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(all_schedules, st.lists(steps, min_size=1, max_size=10))
def test_values_are_finite_non_negative_floats(schedule, ts):
    for t in ts:
        v = schedule(t)
        assert type(v) is float
        assert math.isfinite(v) and v >= 0.0


@settings(max_examples=100, deadline=None)
@given(all_schedules, st.lists(steps, min_size=1, max_size=5))
def test_to_dict_from_dict_round_trip(schedule, ts):
    d = schedule.to_dict()
    plain = json.loads(json.dumps(d))
    assert plain == d  # only plain JSON types inside
    rebuilt = from_dict(plain)
    assert rebuilt == schedule
    assert type(rebuilt) is type(schedule)
    assert [rebuilt(t) for t in ts] == [schedule(t) for t in ts]


@settings(max_examples=100, deadline=None)
@given(_joins(simple_schedules))
def test_join_hands_over_at_each_boundary(schedule):
    starts = (0, *schedule.boundaries)
    for i, b in enumerate(schedule.boundaries):
        # from the new side: the next schedule at its own step 0; just before: the old one
        assert schedule(b) == schedule.schedules[i + 1](0)
        assert schedule(b - 1) == schedule.schedules[i](b - 1 - starts[i])
        end = schedule.boundaries[i + 1] if i + 1 < len(schedule.boundaries) else b + 5
        for k in range(min(end - b, 5)):
            assert schedule(b + k) == schedule.schedules[i + 1](k)


@settings(max_examples=100, deadline=None)
@given(st.one_of(lrs, simple_schedules), st.integers(2, 5000), st.floats(0.0, 1.0))
def test_linear_warmup_is_continuous_at_the_end_of_the_ramp(inner, warmup, start_factor):
    s = linear_warmup(inner, warmup, start_factor)
    target = inner(warmup) if isinstance(inner, Schedule) else inner
    assert s(warmup) == target
    assert s(0) == pytest.approx(start_factor * target, rel=1e-12, abs=1e-300)
    # the ramp extended by one step lands on the value at warmup_steps: each value is a few
    # ulp off the exact ramp and 2a - b triples that, so within 1e-15 relative of target;
    # rel=1e-9 / abs=1e-12 leave room and still catch a ramp off by a step (1/warmup >= 2e-4)
    extrapolated = 2 * s(warmup - 1) - s(warmup - 2)
    assert extrapolated == pytest.approx(s(warmup), rel=1e-9, abs=1e-12)
    assert s(warmup + 1) == (inner(warmup + 1) if isinstance(inner, Schedule) else inner)


# ---------------------------------------------------------------------------------------------
# registry, specs, immutability, docs


def test_registry_names_classes_with_one_line_descriptions():
    assert set(SCHEDULES) == {
        "constant",
        "step_decay",
        "multistep",
        "exponential_decay",
        "inverse_time_decay",
        "piecewise_constant",
        "polynomial_decay",
        "cosine_decay",
        "linear_warmup",
        "warm_restarts",
        "one_cycle",
        "join",
        "reduce_on_plateau",
    }
    for name, cls in SCHEDULES.items():
        assert isinstance(cls, type) and cls.name == name
        first = (cls.__doc__ or "").strip().splitlines()[0]
        assert first.endswith(".") and len(first) <= 100, name


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("step_decay:lr=0.1,gamma=0.9,step_size=1000", step_decay(0.1, 0.9, 1000)),
        (" step_decay : lr = 0.1 , gamma=0.9, step_size=1e3 ", step_decay(0.1, 0.9, 1000)),
        ("constant:lr=1", constant(1.0)),
        ("multistep:lr=0.1,milestones=30,gamma=0.1", multistep(0.1, [30], 0.1)),
        ("multistep:lr=0.1,milestones=,gamma=0.1", multistep(0.1, [], 0.1)),
        (
            "piecewise_constant:boundaries=1000/2000,values=0.1/0.01/0.001",
            piecewise_constant([1000, 2000], [0.1, 0.01, 0.001]),
        ),
        (
            "exponential_decay:lr=0.1,decay_rate=0.96,decay_steps=100,staircase=true",
            exponential_decay(0.1, 0.96, 100, True),
        ),
        ("inverse_time_decay:lr=0.1,decay_steps=10", inverse_time_decay(0.1, 10)),
        (
            "one_cycle:max_lr=0.1,total_steps=100,anneal=linear,three_phase=True",
            one_cycle(0.1, 100, anneal="linear", three_phase=True),
        ),
        ("linear_warmup:schedule=0.1,warmup_steps=10", linear_warmup(0.1, 10)),
        ("warm_restarts:lr=0.1,first_period=10,period_mult=2,", warm_restarts(0.1, 10, 2)),
    ],
)
def test_from_spec(spec, expected):
    got = from_spec(spec)
    assert got == expected
    assert [got(t) for t in (0, 5, 999, 1000, 1500, 2001)] == [
        expected(t) for t in (0, 5, 999, 1000, 1500, 2001)
    ]


def test_a_schedule_is_declared_once_by_its_class(monkeypatch):
    import optimlab.schedules as package
    from optimlab.schedules.base import Schedule, frozen, register

    for name, cls in SCHEDULES.items():  # the registry drives the package's names
        assert getattr(package, cls.__name__) is cls and cls.__name__ in package.__all__
        pure = issubclass(cls, Schedule)
        assert (getattr(package, name, None) is cls) == pure and (name in package.__all__) == pure
    assert set(package.__all__) == set(package.base.exports()) | {
        "SCHEDULES",
        "Schedule",
        "ScheduleDriver",
        "as_schedule",
        "drive",
        "from_dict",
        "from_spec",
        "scheduled_value",
    }

    monkeypatch.setattr(package.base, "SCHEDULES", dict(SCHEDULES))  # a declaration, undone after
    monkeypatch.setattr(package.serialize, "SCHEDULES", package.base.SCHEDULES)

    @register
    @frozen
    class Halving(Schedule):
        """Halve the lr every step (a schedule declared in a test)."""

        name: ClassVar[str] = "halving"
        _list_args: ClassVar[tuple[str, ...]] = ("offsets",)
        lr: float
        offsets: tuple[int, ...] = ()

        def _lr(self, t):
            return self.lr / 2 ** (t + sum(self.offsets))

    assert from_spec("halving:lr=1,offsets=1/2")(1) == 1 / 16
    assert from_dict({"name": "halving", "lr": 1.0}) == Halving(1.0)
    with pytest.raises(TypeError, match=r"schedule name 'halving' is taken by .*Halving"):
        register(Halving)
    with pytest.raises(TypeError, match=r"needs a name that is an identifier"):
        register(type("Nameless", (Schedule,), {}))


def test_from_spec_builds_reduce_on_plateau():
    s = from_spec("reduce_on_plateau:lr=0.1,patience=2,mode=max")
    assert s.to_dict() == ReduceOnPlateau(0.1, patience=2, mode="max").to_dict()


def test_schedules_are_immutable_hashable_and_values_are_floats():
    s = multistep(1, [3], 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.lr = 0.5
    assert hash(s) == hash(multistep(1.0, (3,), 1.0))
    assert s.milestones == (3,) and type(s.lr) is float
    assert type(s(np.int64(4))) is float and s(np.int64(4)) == 1.0
    assert s(torch.tensor(4)) == 1.0


# ---------------------------------------------------------------------------------------------
# errors

VALID = ", ".join(sorted(SCHEDULES))

BAD = [
    (
        lambda: step_decay(0.1, 0.5, 0),
        ValueError,
        r"step_decay: step_size must be an integer >= 1, got 0",
    ),
    (lambda: step_decay(0.1, 0.5, -3), ValueError, r"step_size must be an integer >= 1, got -3"),
    (lambda: step_decay(0.1, 0.5, 2.5), TypeError, r"step_size must be an integer >= 1, got 2.5"),
    (lambda: step_decay(-0.1, 0.5, 10), ValueError, r"lr must be a finite number >= 0, got -0.1"),
    (
        lambda: step_decay(math.nan, 0.5, 10),
        ValueError,
        r"lr must be a finite number >= 0, got nan",
    ),
    (
        lambda: step_decay(math.inf, 0.5, 10),
        ValueError,
        r"lr must be a finite number >= 0, got inf",
    ),
    (lambda: step_decay("0.1", 0.5, 10), TypeError, r"lr must be a real number, got '0.1'"),
    (lambda: step_decay(0.1, 1.5, 10), ValueError, r"gamma must be in \(0, 1\], got 1.5"),
    (lambda: step_decay(0.1, 0.0, 10), ValueError, r"gamma must be in \(0, 1\], got 0.0"),
    (
        lambda: multistep(0.1, [10, 5], 0.1),
        ValueError,
        r"milestones must be strictly increasing, got \[10, 5\]",
    ),
    (lambda: multistep(0.1, [10, 10], 0.1), ValueError, r"milestones must be strictly increasing"),
    (
        lambda: multistep(0.1, [-1], 0.1),
        ValueError,
        r"milestones\[0\] must be an integer >= 0, got -1",
    ),
    (lambda: multistep(0.1, 10, 0.1), TypeError, r"multistep: milestones must be a list, got 10"),
    (lambda: multistep(0.1, [10], -0.5), ValueError, r"gamma must be in \(0, 1\], got -0.5"),
    (
        lambda: exponential_decay(0.1, 1.5, 10),
        ValueError,
        r"decay_rate must be in \(0, 1\], got 1.5",
    ),
    (
        lambda: exponential_decay(0.1, 0.5, 0),
        ValueError,
        r"decay_steps must be an integer >= 1, got 0",
    ),
    (
        lambda: exponential_decay(0.1, 0.5, 9, staircase=1),
        TypeError,
        r"staircase must be True or False, got 1",
    ),
    (
        lambda: inverse_time_decay(0.1, 0),
        ValueError,
        r"inverse_time_decay: decay_steps must be an integer >= 1, got 0",
    ),
    (
        lambda: inverse_time_decay(0.1, 10, -1.0),
        ValueError,
        r"decay_rate must be a finite number >= 0, got -1.0",
    ),
    (
        lambda: piecewise_constant([10, 5], [1, 2, 3]),
        ValueError,
        r"boundaries must be strictly increasing, got \[10, 5\]",
    ),
    (
        lambda: piecewise_constant([10], [1.0]),
        ValueError,
        r"values must have len\(boundaries\) \+ 1 = 2 entries, got 1",
    ),
    (lambda: piecewise_constant([10], [1.0, 2.0, 3.0]), ValueError, r"= 2 entries, got 3"),
    (
        lambda: piecewise_constant([10], [1.0, -1.0]),
        ValueError,
        r"values\[1\] must be a finite number >= 0, got -1.0",
    ),
    (
        lambda: polynomial_decay(0.1, 0),
        ValueError,
        r"polynomial_decay: decay_steps must be an integer >= 1, got 0",
    ),
    (
        lambda: polynomial_decay(0.1, 10, power=0.0),
        ValueError,
        r"power must be a finite number > 0, got 0.0",
    ),
    (
        lambda: polynomial_decay(0.1, 10, end_lr=-0.1),
        ValueError,
        r"end_lr must be a finite number >= 0, got -0.1",
    ),
    (
        lambda: cosine_decay(0.1, 0),
        ValueError,
        r"cosine_decay: decay_steps must be an integer >= 1, got 0",
    ),
    (lambda: cosine_decay(0.1, 10, -1), ValueError, r"end_lr must be a finite number >= 0, got -1"),
    (lambda: linear_warmup(0.1, -1), ValueError, r"warmup_steps must be an integer >= 0, got -1"),
    (lambda: linear_warmup(0.1, 10, 1.5), ValueError, r"start_factor must be in \[0, 1\], got 1.5"),
    (
        lambda: linear_warmup("fast", 10),
        TypeError,
        r"linear_warmup: schedule must be a real number, got 'fast'",
    ),
    (lambda: warm_restarts(0.1, 0), ValueError, r"first_period must be an integer >= 1, got 0"),
    (lambda: warm_restarts(0.1, 10, 0), ValueError, r"period_mult must be an integer >= 1, got 0"),
    (
        lambda: warm_restarts(0.1, 10, 1.5),
        TypeError,
        r"period_mult must be an integer >= 1, got 1.5",
    ),
    (
        lambda: one_cycle(0.1, 0),
        ValueError,
        r"one_cycle: total_steps must be an integer >= 1, got 0",
    ),
    (
        lambda: one_cycle(0.1, 100, pct_start=1.5),
        ValueError,
        r"pct_start must be in \[0, 1\], got 1.5",
    ),
    (
        lambda: one_cycle(0.1, 100, div_factor=0),
        ValueError,
        r"div_factor must be a finite number > 0, got 0",
    ),
    (
        lambda: one_cycle(0.1, 100, anneal="exp"),
        ValueError,
        r"anneal must be one of 'cos', 'linear', got 'exp'",
    ),
    (
        lambda: one_cycle(0.1, 10, pct_start=0.1),
        ValueError,
        r"pct_start \* total_steps must not equal 1",
    ),
    (lambda: join([], []), ValueError, r"join: schedules must hold at least one schedule"),
    (
        lambda: join([constant(1)], [5]),
        ValueError,
        r"boundaries must have len\(schedules\) - 1 = 0 entries, got 1",
    ),
    (
        lambda: join([constant(1), constant(2)], [0]),
        ValueError,
        r"boundaries\[0\] must be an integer >= 1, got 0",
    ),
    (
        lambda: join([constant(1)] * 3, [5, 5]),
        ValueError,
        r"boundaries must be strictly increasing, got \[5, 5\]",
    ),
    (lambda: join([constant(1), 0.5], [3]), TypeError, r"schedules\[1\] must be a pure schedule"),
    (
        lambda: join([constant(1), ReduceOnPlateau(0.1)], [3]),
        TypeError,
        r"schedules\[1\] must be a pure schedule",
    ),
    (lambda: ReduceOnPlateau(0.1, factor=1.0), ValueError, r"factor must be in \[0, 1\), got 1.0"),
    (
        lambda: ReduceOnPlateau(-0.1),
        ValueError,
        r"reduce_on_plateau: lr must be a finite number >= 0",
    ),
    (
        lambda: ReduceOnPlateau(0.1, mode="avg"),
        ValueError,
        r"mode must be one of 'min', 'max', got 'avg'",
    ),
    (
        lambda: ReduceOnPlateau(0.1, threshold_mode="pct"),
        ValueError,
        r"threshold_mode must be one of 'rel', 'abs'",
    ),
    (
        lambda: ReduceOnPlateau(0.1, patience=-1),
        ValueError,
        r"patience must be an integer >= 0, got -1",
    ),
    (
        lambda: ReduceOnPlateau(0.1, cooldown=1.5),
        TypeError,
        r"cooldown must be an integer >= 0, got 1.5",
    ),
    (lambda: ReduceOnPlateau(0.1, min_lr=-1.0), ValueError, r"min_lr must be a finite number >= 0"),
    (lambda: ReduceOnPlateau(0.1).update("low"), TypeError, r"metric must be a number, got 'low'"),
    (lambda: ReduceOnPlateau(0.1).load_state_dict({"lr": 0.1}), ValueError, r"state keys must be"),
    (
        lambda: step_decay(0.1, 0.5, 10)(-1),
        ValueError,
        r"step_decay: step must be a non-negative integer, got -1",
    ),
    (
        lambda: cosine_decay(0.1, 10)(1.5),
        TypeError,
        r"step must be a non-negative integer, got 1.5",
    ),
    (
        lambda: cosine_decay(0.1, 10)(3.0),
        TypeError,
        r"step must be a non-negative integer, got 3.0",
    ),
    (lambda: constant(0.1)(True), TypeError, r"step must be a non-negative integer, got True"),
    (lambda: constant(0.1)("3"), TypeError, r"step must be a non-negative integer, got '3'"),
    (
        lambda: join([constant(1), constant(2)], [3])(-2),
        ValueError,
        r"join: step must be a non-negative integer",
    ),
    (lambda: ReduceOnPlateau(0.1)(-1), ValueError, r"step must be a non-negative integer, got -1"),
    (
        lambda: from_dict({"name": "nope"}),
        ValueError,
        rf"unknown schedule 'nope'; valid names: {VALID}$",
    ),
    (lambda: from_dict({"lr": 0.1}), ValueError, r"missing 'name' key"),
    (lambda: from_dict([("name", "constant")]), TypeError, r"from_dict expects a mapping"),
    (
        lambda: from_dict({"name": "constant", "lr": 0.1, "gamma": 1}),
        TypeError,
        r"constant: unknown argument 'gamma'; valid arguments: lr$",
    ),
    (
        lambda: from_dict({"name": "step_decay", "lr": 0.1, "gamma": 0.5}),
        TypeError,
        r"step_decay: missing required argument 'step_size'",
    ),
    (
        lambda: from_dict(
            {"name": "join", "schedules": [{"name": "constant", "lr": -1}], "boundaries": []}
        ),
        ValueError,
        r"constant: lr must be a finite number >= 0, got -1",
    ),
    (
        lambda: from_spec("nope:lr=1"),
        ValueError,
        rf"unknown schedule 'nope'; valid names: {VALID} \(in spec 'nope:lr=1'\)",
    ),
    (
        lambda: from_spec("step_decay:lr=0.1,gamma=0.5"),
        TypeError,
        r"step_decay: missing required argument 'step_size' \(in spec",
    ),
    (
        lambda: from_spec("step_decay:lr=abc,gamma=0.5,step_size=3"),
        TypeError,
        r"step_decay: lr must be a real number, got 'abc' \(in spec",
    ),
    (
        lambda: from_spec("step_decay:lr,gamma=0.5,step_size=3"),
        ValueError,
        r"step_decay: expected key=value, got 'lr'",
    ),
    (
        lambda: from_spec("step_decay:lr=0.1,gama=0.5,step_size=3"),
        TypeError,
        r"unknown argument 'gama'; valid arguments: lr, gamma, step_size",
    ),
    (
        lambda: from_spec("step_decay:lr=0.1,lr=0.2,gamma=0.5,step_size=3"),
        ValueError,
        r"argument 'lr' given twice",
    ),
    (
        lambda: from_spec("multistep:lr=0.1,milestones=10/x,gamma=0.1"),
        ValueError,
        r"multistep: milestones item 'x' is not a number",
    ),
    (
        lambda: from_spec("multistep:lr=0.1,milestones=20/10,gamma=0.5"),
        ValueError,
        r"milestones must be strictly increasing, got \[20, 10\]",
    ),
    (
        lambda: from_spec("step_decay:lr=0.1,gamma=0.5,step_size=0"),
        ValueError,
        r"step_size must be an integer >= 1, got 0 \(in spec",
    ),
    (lambda: from_spec(42), TypeError, r"from_spec expects a string"),
    (
        lambda: drive(object(), constant(0.1)),
        TypeError,
        r"drive: optimizer must be a torch.optim.Optimizer",
    ),
    (
        lambda: drive(_sgd(), 0.1),
        TypeError,
        r"drive: schedule must be callable as schedule\(step\), got 0.1",
    ),
    (
        lambda: drive(_sgd(), constant(0.1), step=-1),
        ValueError,
        r"drive: step must be a non-negative integer, got -1",
    ),
    (
        lambda: drive(_sgd(), constant(0.1)).load_state_dict({"step": -2}),
        ValueError,
        r"step must be a non-negative integer, got -2",
    ),
    (
        lambda: drive(_sgd(), constant(0.1)).load_state_dict({"epoch": 3}),
        ValueError,
        r"state must be \{'step': int\}",
    ),
]


@pytest.mark.parametrize(("make", "error", "match"), BAD, ids=[b[2][:60] for b in BAD])
def test_bad_arguments_raise_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()
