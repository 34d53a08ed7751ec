"""The notes' formulas: optimlab against independent float64 NumPy transcriptions and identities."""

from __future__ import annotations

import math

import numpy as np
import pytest
import references as ref
import torch
from registry import CASES
from rounding import assert_path_close

import optimlab

REFERENCED = [c for c in CASES if c.reference is not None]

# A least-squares problem in float64: f(w) = |A w - b|^2 / (2 n), gradient A^T (A w - b) / n.
_rng = np.random.default_rng(0)
A = _rng.normal(size=(40, 6)) * np.array([1.0, 2.0, 0.5, 3.0, 1.0, 0.2])
B = _rng.normal(size=40)
W0 = _rng.normal(size=6)


def grad_numpy(w):
    return A.T @ (A @ w - B) / len(B)


def lr_sequence(steps, constant):
    return (
        [0.02] * steps if constant else [0.02 * (1 + 0.5 * math.sin(t / 5)) for t in range(steps)]
    )


def run_optimlab(case, lrs, grad=grad_numpy):
    # The same gradient (from NumPy) is handed to optimlab, so only the update rules differ.
    w = torch.tensor(W0, dtype=torch.float64, requires_grad=True)
    opt = case.make([w], lr=lrs[0])
    points = []
    for lr in lrs:
        opt.param_groups[0]["lr"] = lr
        points.append(w.detach().numpy().copy())
        w.grad = torch.from_numpy(grad(w.detach().numpy()))
        opt.step()
    return points + [w.detach().numpy().copy()]


@pytest.mark.parametrize("case", REFERENCED, ids=str)
def test_matches_the_notes_formula(case):
    # 80 steps: RMSprop's normalized steps near the minimum amplify rounding chaotically, so
    # longer runs compare noise; in 80 steps every rule still travels far from the start.
    # Tolerance: each point's own sensitivity to one ulp per step, times the ulp a step's
    # operations may differ by (rounding.py). A fixed rtol of 1e-10 failed on AVX-512, where
    # Keras' RMSprop amplifies ATen's other rounding to 1.2e-10 by step 71.
    lrs = lr_sequence(80, case.constant_lr_only)
    actual = run_optimlab(case, lrs)
    assert_path_close(actual, lambda grad: case.reference(W0, grad, lrs), grad_numpy)
    # The run must have moved far from the start, or the comparison proves little.
    assert np.linalg.norm(actual[-1] - W0) > 0.1


def test_the_variants_really_differ():
    # eps inside or outside the root, and bias correction on or off, give different paths:
    # if they did not, the reference tests above could not tell the variants apart.
    lrs = [0.02] * 50
    ends = {
        (bc, inside): ref.adam(W0, grad_numpy, lrs, 0.9, 0.999, 1e-4, bc, inside)[-1]
        for bc in (True, False)
        for inside in (True, False)
    }
    values = list(ends.values())
    for i in range(len(values)):
        for j in range(i + 1, len(values)):
            assert np.abs(values[i] - values[j]).max() > 1e-6


def test_ema_momentum_is_heavy_ball_with_scaled_learning_rate():
    beta, lr = 0.9, 0.05
    ema = next(c for c in CASES if c.id == "momentum-ema")
    ball = next(c for c in CASES if c.id == "momentum-heavy_ball")
    nest_ema = next(c for c in CASES if c.id == "momentum-ema-nesterov")
    nest_ball = next(c for c in CASES if c.id == "momentum-heavy_ball-nesterov")
    for a, b in ((ema, ball), (nest_ema, nest_ball)):
        path_a = run_optimlab(a, [lr] * 150)
        # equal in exact arithmetic, not in rounding: the heavy-ball path is the reference,
        # with the tolerance its sensitivity to rounding gives (rounding.py)
        assert_path_close(
            path_a, lambda grad, b=b: run_optimlab(b, [lr * (1 - beta)] * 150, grad), grad_numpy
        )


def test_sgd_momentum_with_dampening_beta_is_ema_after_the_first_step():
    # torch's SGD with dampening = momentum = beta averages like the notes' EMA, except that
    # torch starts the buffer at the first gradient instead of 0: check that first-step rule.
    w = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    opt = optimlab.SGD([w], lr=0.1, momentum=0.9, dampening=0.9)
    w.grad = torch.tensor([2.0], dtype=torch.float64)
    opt.step()
    # abs=1e-15: one or two steps of a few operations on numbers below 1, each rounding by at
    # most half an ulp of 1 (1.1e-16); the wrong first-step rule is 0.18 away
    assert w.item() == pytest.approx(1.0 - 0.1 * 2.0, abs=1e-15)  # buffer = g, not 0.1 * g
    w.grad = torch.tensor([4.0], dtype=torch.float64)
    opt.step()
    assert w.item() == pytest.approx(0.8 - 0.1 * (0.9 * 2.0 + 0.1 * 4.0), abs=1e-15)


def test_keras_rmsprop_one_step():
    # Keras' RMSprop (rho=0.9, epsilon=1e-7) on x**2/2 from 10 with lr 0.1:
    # s = 0.1 * 100 = 10; x = 10 - 0.1 * 10 / sqrt(10 + 1e-7) = 9.683772...
    x = torch.tensor([10.0], dtype=torch.float64, requires_grad=True)
    opt = optimlab.RMSprop([x], lr=0.1, alpha=0.9, eps=1e-7, eps_inside_sqrt=True)
    (x**2 / 2).sum().backward()
    opt.step()
    assert x.item() == pytest.approx(9.683772, abs=5e-7)
    # rel=1e-15 (4.5 ulp): five roundings (square, average, root, division, update) of at most
    # half an ulp of numbers no larger than x
    assert x.item() == pytest.approx(10 - 1 / math.sqrt(10 + 1e-7), rel=1e-15)


def test_nesterov_gradients_are_taken_at_the_look_ahead_point():
    # Record where the user's gradient is evaluated: it must be the notes' look-ahead point
    # w^{t-1} + beta * (w^{t-1} - w^{t-2}) of the literal seed-004 iteration.
    beta, lr = 0.9, 0.01
    case = next(c for c in CASES if c.id == "momentum-heavy_ball-nesterov")
    evaluated = run_optimlab(case, [lr] * 100)[:-1]

    def literal(grad):
        w, dw, expected = W0.copy(), np.zeros_like(W0), []
        for _ in range(100):
            look = w + beta * dw
            expected.append(look)
            w_next = w - lr * grad(look) + beta * dw
            dw, w = w_next - w, w_next
        return expected

    assert_path_close(evaluated, literal, grad_numpy)  # tolerance: see rounding.py
