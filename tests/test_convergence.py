"""Every optimizer and variant reaches the minimum of an ill-conditioned quadratic and of
Rosenbrock from a standard start, within the step budget the registry states for it."""

from __future__ import annotations

import pytest
import torch
from registry import CASES

TOLERANCE = 1e-3  # distance to the known minimizer


def quadratic_grad(w):
    # f = 0.5 * (x^2 + 100 y^2): condition number 100, minimum at (0, 0)
    return torch.stack([w[0], 100 * w[1]])


def rosenbrock_grad(w):
    # f = (1 - x)^2 + 100 (y - x^2)^2, minimum at (1, 1)
    x, y = w[0], w[1]
    return torch.stack([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])


PROBLEMS = {
    "quadratic": (quadratic_grad, [1.5, -0.7], [0.0, 0.0]),
    "rosenbrock": (rosenbrock_grad, [-1.2, 1.0], [1.0, 1.0]),
}


def steps_to_reach(case, problem, lr, budget):
    """The number of steps until the iterate is within TOLERANCE of the minimizer, or None."""
    grad, start, minimizer = PROBLEMS[problem]
    w = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    target = torch.tensor(minimizer, dtype=torch.float64)
    opt = case.make([w], lr=lr)
    for step in range(1, budget + 1):
        w.grad = grad(w.detach())  # the analytic gradient: the test measures the optimizer only
        opt.step()
        if torch.linalg.vector_norm(w.detach() - target) < TOLERANCE:
            return step
    return None


CONVERGING = [
    (case, problem)
    for case in CASES
    if "maximize" not in case.tags
    for problem in PROBLEMS
    # L2 weight decay moves Rosenbrock's minimizer away from (1, 1); the quadratic's stays at 0.
    if not (problem == "rosenbrock" and "weight_decay" in case.tags)
    # Steps of a length that does not shrink near the minimum at a fixed lr (LAMB's and LARS'
    # trust ratios scale them by |w|, about 1.41 at (1, 1)) or that shrink whatever lr is
    # (Adafactor's 1/sqrt(t)): they reach the quadratic's minimum (|w| -> 0), not Rosenbrock's.
    if not (problem == "rosenbrock" and "no_rosenbrock" in case.tags)
]


@pytest.mark.parametrize("case, problem", CONVERGING, ids=lambda x: str(x))
def test_reaches_the_minimum_within_budget(case, problem):
    lr, budget = getattr(case, problem)
    steps = steps_to_reach(case, problem, lr, budget)
    assert steps is not None, (
        f"{case.id} with lr={lr} did not reach the minimum of {problem} in {budget} steps"
    )
