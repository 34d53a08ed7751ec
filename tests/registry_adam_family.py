"""Registry cases for NAdam, RAdam, Adamax, Lion and AdEMAMix (see ``registry.py``, ``case.py``).

NAdam, RAdam and Adamax are checked against their torch.optim twins in each configuration;
RAdam, Adamax, Lion and AdEMAMix against float64 transcriptions of their papers
(``references_adam_family.py``). NAdam's paper reference runs in ``test_adam_family.py``:
its momentum product is rounded to float32 under float32 default dtype, as torch rounds it,
so it matches an exact float64 transcription only with float64 as the default dtype.

Convergence budgets: Lion moves every coordinate by exactly ``lr`` per step, so with a fixed
learning rate it ends in a limit cycle of radius about ``lr`` (``sqrt(2) lr`` on the
quadratic) around the minimum, and on Rosenbrock's curved valley it can stall a few ``lr``
away. Its learning rates here are small enough that it not only passes within the 1e-3
tolerance but stays there (quadratic: radius <= 8e-4 at lr=5e-4; Rosenbrock: <= 9e-4 at
lr=3e-4, also from slightly shifted starts); at lr=1e-3 it still passes through the ball
but cycles up to 2e-3 away.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import references_adam_family as ref
import torch
from case import Case, twin

import optimlab

CASES: list[Case] = [
    # --- NAdam: torch.optim.NAdam --------------------------------------------------------
    Case(
        "nadam",
        optimlab.NAdam,
        {},
        twin(torch.optim.NAdam),
        quadratic=(1e-2, 1000),
        rosenbrock=(5e-3, 10000),
    ),
    Case(
        "nadam-weight_decay",
        optimlab.NAdam,
        dict(weight_decay=1e-2),
        twin(torch.optim.NAdam, weight_decay=1e-2),
        quadratic=(1e-2, 1000),
        tags=frozenset({"weight_decay"}),
    ),
    Case(
        "nadam-decoupled_weight_decay",
        optimlab.NAdam,
        dict(weight_decay=1e-2, decoupled_weight_decay=True),
        twin(torch.optim.NAdam, weight_decay=1e-2, decoupled_weight_decay=True),
        quadratic=(1e-2, 1000),
        tags=frozenset({"weight_decay"}),
    ),
    Case(
        "nadam-momentum_decay-betas-maximize",
        optimlab.NAdam,
        dict(momentum_decay=1e-2, betas=(0.8, 0.99), weight_decay=1e-2, maximize=True),
        twin(
            torch.optim.NAdam,
            momentum_decay=1e-2,
            betas=(0.8, 0.99),
            weight_decay=1e-2,
            maximize=True,
        ),
        tags=frozenset({"maximize"}),
    ),
    # --- RAdam: torch.optim.RAdam --------------------------------------------------------
    Case(
        "radam",
        optimlab.RAdam,
        {},
        twin(torch.optim.RAdam),
        reference=ref.radam,
        quadratic=(3e-2, 1000),
        rosenbrock=(5e-3, 15000),
    ),
    Case(
        "radam-weight_decay",
        optimlab.RAdam,
        dict(weight_decay=1e-2),
        twin(torch.optim.RAdam, weight_decay=1e-2),
        quadratic=(3e-2, 1000),
        tags=frozenset({"weight_decay"}),
    ),
    Case(
        "radam-decoupled_weight_decay",
        optimlab.RAdam,
        dict(weight_decay=1e-2, decoupled_weight_decay=True),
        twin(torch.optim.RAdam, weight_decay=1e-2, decoupled_weight_decay=True),
        quadratic=(3e-2, 1000),
        tags=frozenset({"weight_decay"}),
    ),
    Case(
        "radam-betas-weight_decay-maximize",
        optimlab.RAdam,
        dict(betas=(0.8, 0.99), weight_decay=1e-2, maximize=True),
        twin(torch.optim.RAdam, betas=(0.8, 0.99), weight_decay=1e-2, maximize=True),
        tags=frozenset({"maximize"}),
    ),
    # --- Adamax: torch.optim.Adamax ------------------------------------------------------
    Case(
        "adamax",
        optimlab.Adamax,
        {},
        twin(torch.optim.Adamax),
        reference=ref.adamax,
        quadratic=(3e-2, 500),
        rosenbrock=(1e-1, 6000),
    ),
    Case(
        "adamax-weight_decay",
        optimlab.Adamax,
        dict(weight_decay=1e-2),
        twin(torch.optim.Adamax, weight_decay=1e-2),
        quadratic=(3e-2, 500),
        tags=frozenset({"weight_decay"}),
    ),
    Case(
        "adamax-betas-eps-weight_decay-maximize",
        optimlab.Adamax,
        dict(betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2, maximize=True),
        twin(torch.optim.Adamax, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2, maximize=True),
        tags=frozenset({"maximize"}),
    ),
    # --- Lion: the paper's Algorithm 2 (no torch twin) -----------------------------------
    Case(
        "lion",
        optimlab.Lion,
        {},
        reference=ref.lion,
        quadratic=(5e-4, 4000),
        rosenbrock=(3e-4, 12000),
    ),
    Case(
        "lion-weight_decay",
        optimlab.Lion,
        dict(weight_decay=0.5),
        reference=partial(ref.lion, weight_decay=0.5),
        quadratic=(5e-4, 4000),
        tags=frozenset({"weight_decay"}),
    ),
    Case(
        "lion-betas-maximize",
        optimlab.Lion,
        dict(betas=(0.95, 0.98), maximize=True),
        tags=frozenset({"maximize"}),
    ),
    # --- AdEMAMix: the paper's Algorithm 1 (no torch twin) -------------------------------
    # Its slow average (half-life about 7000 steps) overshoots and comes back on the
    # quadratic: slower than Adam there.
    Case(
        "ademamix",
        optimlab.AdEMAMix,
        {},
        reference=ref.ademamix,
        quadratic=(3e-2, 10000),
        rosenbrock=(3e-2, 2000),
    ),
    Case(
        "ademamix-warmups-alpha-weight_decay",
        optimlab.AdEMAMix,
        dict(alpha=5.0, beta3_warmup=50, alpha_warmup=50, weight_decay=1e-2),
        reference=partial(
            ref.ademamix, alpha=5.0, beta3_warmup=50, alpha_warmup=50, weight_decay=1e-2
        ),
        quadratic=(1e-2, 12000),
        tags=frozenset({"weight_decay"}),
    ),
    Case(
        "ademamix-betas-eps-maximize",
        optimlab.AdEMAMix,
        dict(betas=(0.8, 0.99, 0.999), eps=1e-6, maximize=True),
        tags=frozenset({"maximize"}),
    ),
]

#: the classes whose betas are a pair (AdEMAMix's are a triple)
PAIRED_BETAS: list[type] = [optimlab.NAdam, optimlab.RAdam, optimlab.Adamax, optimlab.Lion]
_ADEMAMIX = [
    (
        dict(betas=(0.9, 0.999)),
        TypeError,
        r"Invalid betas value: \(0\.9, 0\.999\); expected a triple \(beta1, beta2, beta3\)",
    ),
    (
        dict(betas=(0.9, 0.999, 1.0)),
        ValueError,
        r"Invalid beta parameter at index 2: 1\.0 \(.*\); expected a number in \[0, 1\)",
    ),
    (dict(alpha=-1.0), ValueError, r"Invalid alpha value: -1\.0; expected a finite number >= 0"),
    (
        dict(beta3_warmup=0),
        ValueError,
        r"Invalid beta3_warmup value: 0; expected None or an integer",
    ),
    (
        dict(alpha_warmup=10.0),
        TypeError,
        r"Invalid alpha_warmup value: 10\.0 \(a float\); expected None or an integer >= 1",
    ),
    (dict(alpha_warmup=True), TypeError, r"Invalid alpha_warmup value: True"),
    (
        dict(alpha_warmup=10**60),
        ValueError,
        r"Invalid alpha_warmup value: 10+; expected None or an integer in \[1, 2\*\*53\]",
    ),
]

_BETAS = [
    (
        dict(betas=(1.0, 0.999)),
        ValueError,
        r"Invalid beta parameter at index 0: 1\.0 \(.*\); expected a number in \[0, 1\)",
    ),
    (
        dict(betas=(0.9, -0.1)),
        ValueError,
        r"Invalid beta parameter at index 1: -0\.1 \(.*\); expected a number in \[0, 1\)",
    ),
    (dict(betas=(0.9, float("nan"))), ValueError, r"Invalid betas\[1\] value: nan"),
    (dict(betas=0.9), TypeError, r"Invalid betas value: 0\.9; expected a pair \(beta1, beta2\)"),
    (
        dict(betas=(0.9, 0.99, 0.999)),
        TypeError,
        r"Invalid betas value: \(0\.9, 0\.99, 0\.999\); expected a pair",
    ),
    (
        dict(betas=(0.9, "x")),
        TypeError,
        r"Invalid betas\[1\] value: 'x' \(a str\); expected a real number",
    ),
]
_EPS = [
    (
        dict(eps=-1e-8),
        ValueError,
        r"Invalid epsilon value: -1e-08 \(eps\); expected a finite number >= 0",
    ),
    (
        dict(eps=float("inf")),
        ValueError,
        r"Invalid epsilon value: inf \(eps\); expected a finite number",
    ),
    (
        dict(eps="1e-8"),
        TypeError,
        r"Invalid epsilon value: '1e-8' \(eps, a str\); expected a real number",
    ),
]
_DECOUPLED = [
    (
        dict(decoupled_weight_decay=1),
        TypeError,
        r"Invalid decoupled_weight_decay value: 1; expected True or False",
    ),
    (dict(decoupled_weight_decay="yes"), TypeError, r"Invalid decoupled_weight_decay value: 'yes'"),
]

# (class, keyword arguments, exception type, regex the message must match)
BAD_INPUTS: list[tuple[type, dict[str, Any], type, str]] = [
    *[(cls, kw, error, message) for cls in PAIRED_BETAS for kw, error, message in _BETAS],
    *[(optimlab.AdEMAMix, kw, error, message) for kw, error, message in _ADEMAMIX + _EPS],
    *[
        (cls, kw, error, message)
        for cls in (optimlab.NAdam, optimlab.RAdam, optimlab.Adamax)
        for kw, error, message in _EPS
    ],
    *[
        (cls, kw, error, message)
        for cls in (optimlab.NAdam, optimlab.RAdam)
        for kw, error, message in _DECOUPLED
    ],
    (
        optimlab.NAdam,
        dict(momentum_decay=-4e-3),
        ValueError,
        r"Invalid momentum_decay value: -0\.004; expected a finite number >= 0",
    ),
    (
        optimlab.NAdam,
        dict(momentum_decay=float("nan")),
        ValueError,
        r"Invalid momentum_decay value: nan; expected a finite number",
    ),
    (
        optimlab.NAdam,
        dict(momentum_decay=None),
        TypeError,
        r"Invalid momentum_decay value: None \(a NoneType\); expected a real number",
    ),
]
