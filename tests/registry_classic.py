"""Registry cases for Adagrad, Adadelta, Rprop and ASGD (see ``registry.py`` and ``case.py``).

Every configuration has a ``torch.optim`` twin: the parity test runs both for 120 steps with the
learning rate changing every step. Budgets were found by scanning learning rates; each case
reaches the minimum in well under its budget (the step counts it took are noted).
"""

from __future__ import annotations

from typing import Any

import torch
from case import Case, twin

import optimlab

# Rprop reads the learning rate only when a parameter's state is created (the initial step
# size), and keeps every step size at least step_sizes[0] > 0: with lr = 0 it still moves the
# weights (as torch's does). test_lr_zero_group_and_gradless_parameter_stay_unchanged must
# skip cases with this tag.
LR_IS_INITIAL_STEP_SIZE = "lr_is_initial_step_size"

# Adadelta's first steps are about lr * sqrt(eps) * sign(g): with the tests' lr = 0.01, 1e-5,
# below bfloat16's resolution at 1 (test_bfloat16_parameters honours the tag).
TINY_FIRST_STEPS = "tiny_first_steps"

CASES: list[Case] = [
    # --- Adagrad ---------------------------------------------------------------------------
    Case(
        "adagrad",
        optimlab.Adagrad,
        {},
        twin(torch.optim.Adagrad),
        quadratic=(0.3, 150),  # 64 steps
        rosenbrock=(0.3, 20000),  # 9867 steps
    ),
    Case(
        "adagrad-lr_decay-initial_accumulator_value-eps-weight_decay",
        optimlab.Adagrad,
        dict(lr_decay=1e-3, initial_accumulator_value=0.1, eps=1e-6, weight_decay=1e-2),
        twin(
            torch.optim.Adagrad,
            lr_decay=1e-3,
            initial_accumulator_value=0.1,
            eps=1e-6,
            weight_decay=1e-2,
        ),
        quadratic=(0.3, 150),  # 67 steps
        tags=frozenset({"weight_decay"}),
    ),
    Case(
        "adagrad-weight_decay-maximize",
        optimlab.Adagrad,
        dict(weight_decay=1e-2, maximize=True),
        twin(torch.optim.Adagrad, weight_decay=1e-2, maximize=True),
        tags=frozenset({"maximize"}),
    ),
    # --- Adadelta: near a minimum it is gradient descent with a step of about lr, so lr must
    # suit the curvature (the quadratic's 100): the paper's lr = 1 oscillates across it. ----
    Case(
        "adadelta",
        optimlab.Adadelta,
        {},
        twin(torch.optim.Adadelta),
        quadratic=(0.03, 10000),  # 5592 steps
        rosenbrock=(0.01, 30000),  # 20493 steps
        tags=frozenset({TINY_FIRST_STEPS}),
    ),
    Case(
        "adadelta-rho-eps-weight_decay",
        optimlab.Adadelta,
        dict(rho=0.5, eps=1e-4, weight_decay=1e-2),
        twin(torch.optim.Adadelta, rho=0.5, eps=1e-4, weight_decay=1e-2),
        quadratic=(0.01, 3500),  # 1592 steps
        tags=frozenset({"weight_decay", TINY_FIRST_STEPS}),
    ),
    Case(
        "adadelta-weight_decay-maximize",
        optimlab.Adadelta,
        dict(weight_decay=1e-2, maximize=True),
        twin(torch.optim.Adadelta, weight_decay=1e-2, maximize=True),
        tags=frozenset({"maximize", TINY_FIRST_STEPS}),
    ),
    # --- Rprop: on Rosenbrock's curved valley the signs alternate and the step sizes can
    # collapse to their minimum; whether 1e-3 is reached depends on the start. ---------------
    Case(
        "rprop",
        optimlab.Rprop,
        {},
        twin(torch.optim.Rprop),
        quadratic=(1e-2, 100),  # 40 steps
        rosenbrock=(1e-3, 8000),  # 3936 steps
        tags=frozenset({LR_IS_INITIAL_STEP_SIZE}),
    ),
    Case(
        "rprop-etas-step_sizes",
        optimlab.Rprop,
        dict(etas=(0.3, 1.5), step_sizes=(1e-6, 1.0)),
        twin(torch.optim.Rprop, etas=(0.3, 1.5), step_sizes=(1e-6, 1.0)),
        quadratic=(1e-2, 100),  # 45 steps
        rosenbrock=(1e-3, 12000),  # 5965 steps
        tags=frozenset({LR_IS_INITIAL_STEP_SIZE}),
    ),
    Case(
        "rprop-maximize",
        optimlab.Rprop,
        dict(maximize=True),
        twin(torch.optim.Rprop, maximize=True),
        tags=frozenset({"maximize", LR_IS_INITIAL_STEP_SIZE}),
    ),
    # --- ASGD: SGD's budgets; lambd shrinks the weights like weight decay ----------------------
    Case(
        "asgd",
        optimlab.ASGD,
        {},
        twin(torch.optim.ASGD),
        quadratic=(1e-2, 1500),  # 728 steps
        rosenbrock=(2e-3, 20000),  # 9013 steps
    ),
    Case(
        "asgd-averaging-lambd-alpha-weight_decay",
        optimlab.ASGD,
        dict(lambd=1e-2, alpha=0.5, t0=10, weight_decay=1e-3),
        twin(torch.optim.ASGD, lambd=1e-2, alpha=0.5, t0=10, weight_decay=1e-3),
        quadratic=(1e-2, 1500),  # 733 steps
        tags=frozenset({"weight_decay"}),  # lambd = 1e-2 moves Rosenbrock's minimizer too
    ),
    Case(
        "asgd-weight_decay-maximize",
        optimlab.ASGD,
        dict(lambd=1e-3, t0=20, weight_decay=1e-2, maximize=True),
        twin(torch.optim.ASGD, lambd=1e-3, t0=20, weight_decay=1e-2, maximize=True),
        tags=frozenset({"maximize"}),
    ),
]


# (class, keyword arguments, exception type, regex the message must match); the generic checks
# (lr, weight_decay, maximize, foreach, nonfinite_grads) are added by registry.py for every class
BAD_INPUTS: list[tuple[type, dict[str, Any], type, str]] = [
    # Adagrad
    (
        optimlab.Adagrad,
        dict(lr_decay=-0.1),
        ValueError,
        r"Invalid lr_decay value: -0\.1; expected a finite number >= 0",
    ),
    (optimlab.Adagrad, dict(lr_decay=float("inf")), ValueError, r"Invalid lr_decay value: inf"),
    (
        optimlab.Adagrad,
        dict(initial_accumulator_value=-1.0),
        ValueError,
        r"Invalid initial_accumulator_value value: -1\.0; expected a finite number >= 0",
    ),
    (
        optimlab.Adagrad,
        dict(initial_accumulator_value="0"),
        TypeError,
        r"Invalid initial_accumulator_value value: '0' \(a str\); expected a real number",
    ),
    (
        optimlab.Adagrad,
        dict(eps=-1e-10),
        ValueError,
        r"Invalid epsilon value: -1e-10 \(eps\); expected a finite",
    ),
    # Adadelta
    (
        optimlab.Adadelta,
        dict(rho=1.5),
        ValueError,
        r"Invalid rho value: 1\.5; expected a number in \[0, 1\]",
    ),
    (optimlab.Adadelta, dict(rho=-0.1), ValueError, r"Invalid rho value: -0\.1"),
    (optimlab.Adadelta, dict(rho=float("nan")), ValueError, r"Invalid rho value: nan"),
    (
        optimlab.Adadelta,
        dict(eps=-1e-6),
        ValueError,
        r"Invalid epsilon value: -1e-06 \(eps\); expected a finite",
    ),
    # Rprop
    (
        optimlab.Rprop,
        dict(etas=(1.2, 0.5)),
        ValueError,
        r"Invalid eta values: 1\.2, 0\.5 \(etas=\(1\.2, 0\.5\)\); expected a pair \(etaminus, "
        r"etaplus\) with "
        r"0 < etaminus < 1 < etaplus",
    ),
    (
        optimlab.Rprop,
        dict(etas=(0.0, 1.2)),
        ValueError,
        r"Invalid eta values: 0\.0, 1\.2 \(etas=\(0\.0, 1\.2\)\)",
    ),
    (
        optimlab.Rprop,
        dict(etas=(0.5, 1.0)),
        ValueError,
        r"Invalid eta values: 0\.5, 1\.0 \(etas=\(0\.5, 1\.0\)\)",
    ),
    (
        optimlab.Rprop,
        dict(etas=(1.0, 1.2)),
        ValueError,
        r"Invalid eta values: 1\.0, 1\.2 \(etas=\(1\.0, 1\.2\)\)",
    ),
    (optimlab.Rprop, dict(etas=0.5), TypeError, r"Invalid etas value: 0\.5; expected a pair"),
    (optimlab.Rprop, dict(etas=(0.5, "x")), TypeError, r"Invalid etas\[1\] value: 'x'"),
    (optimlab.Rprop, dict(etas=(float("nan"), 1.2)), ValueError, r"Invalid etas\[0\] value: nan"),
    (
        optimlab.Rprop,
        dict(step_sizes=(1.0, 1e-6)),
        ValueError,
        r"Invalid step_sizes value: \(1\.0, 1e-06\); expected a pair \(min, max\) with 0 <= min <= max",
    ),
    (
        optimlab.Rprop,
        dict(step_sizes=(-1e-6, 50.0)),
        ValueError,
        r"Invalid step_sizes value: \(-1e-06,",
    ),
    (
        optimlab.Rprop,
        dict(step_sizes=(-1e-6, 50)),
        ValueError,
        r"Invalid step_sizes value: \(-1e-06,",
    ),
    (
        optimlab.Rprop,
        dict(step_sizes=(1e-6,)),
        TypeError,
        r"Invalid step_sizes value: \(1e-06,\); ",
    ),
    (
        optimlab.Rprop,
        dict(step_sizes=(1e-6, float("inf"))),
        ValueError,
        r"Invalid step_sizes\[1\] value: inf; expected a finite number",
    ),
    # ASGD
    (
        optimlab.ASGD,
        dict(lambd=-1e-4),
        ValueError,
        r"Invalid lambd value: -0\.0001; expected a finite number >= 0",
    ),
    (
        optimlab.ASGD,
        dict(alpha=-0.75),
        ValueError,
        r"Invalid alpha value: -0\.75; expected a finite",
    ),
    (optimlab.ASGD, dict(alpha=None), TypeError, r"Invalid alpha value: None \(a NoneType\)"),
    (
        optimlab.ASGD,
        dict(t0=-1.0),
        ValueError,
        r"Invalid t0 value: -1\.0; expected a finite number",
    ),
    (optimlab.ASGD, dict(t0=float("nan")), ValueError, r"Invalid t0 value: nan; expected a finite"),
    (optimlab.ASGD, dict(t0="1e6"), TypeError, r"Invalid t0 value: '1e6' \(a str\)"),
    # issue 13: values beyond the float range's bounds (2**32: its fourth root in float32)
    (
        optimlab.Rprop,
        dict(step_sizes=(1e-6, 1e308)),
        ValueError,
        r"Invalid step_sizes\[1\] value: 1e\+308; expected a number in \[0, 2\*\*32\]",
    ),
    (
        optimlab.Rprop,
        dict(etas=(0.5, 1e300)),
        ValueError,
        r"Invalid etas\[1\] value: 1e\+300; expected",
    ),
    (
        optimlab.ASGD,
        dict(lambd=1e18),
        ValueError,
        r"Invalid lambd value: 1e\+18; expected a number in",
    ),
    (
        optimlab.ASGD,
        dict(t0=10**400),
        ValueError,
        r"Invalid t0 value: 1000+; expected a finite number",
    ),
    (optimlab.Adagrad, dict(initial_accumulator_value=1e100), ValueError, r"\[0, 2\*\*32\]"),
]
