"""Registry cases for Adafactor, Muon, LAMB and LARS (see ``registry.py`` and ``case.py``).

Tags beyond the common ones:

* ``no_rosenbrock``: the optimizer cannot reach Rosenbrock's minimum within 1e-3 at a fixed
  ``lr`` in a test's time (the test must skip Rosenbrock for such cases). Adafactor's relative
  step size decays as ``1/sqrt(t)`` whatever ``lr`` is (``lr`` only caps it), so it crawls
  along the valley: 0.017 away after 20000 steps at lr 0.1; no lr of 0.003-0.3 got there in
  20000 steps, nor 1 in 10000. LAMB's step has the fixed length ``lr * |w|`` (the trust ratio normalizes it) and
  ``|w| -> sqrt(2)`` at the minimizer, so it circles at a distance of about the step length:
  lr 3e-4 and 6e-4 (20000 steps) and 0.01-0.3 (6000 steps) never got within 1e-3. LARS
  without momentum likewise steps ``lr * trust_coefficient * |w|`` (of lr 0.003, 0.01, 0.03
  only 0.03 got there, in 9227 steps); with momentum the velocity averages the circling away
  and it converges. On the quadratic ``|w| -> 0`` shrinks all their steps: they converge.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import references_layerwise as ref
import torch
from case import Case, twin

import optimlab

NO_ROSENBROCK = "no_rosenbrock"

CASES: list[Case] = [
    # --- Adafactor: torch.optim.Adafactor ----------------------------------------------------
    Case(
        "adafactor",
        optimlab.Adafactor,
        {},
        twin(torch.optim.Adafactor),
        quadratic=(0.3, 1500),
        tags=frozenset({NO_ROSENBROCK}),
    ),
    Case(
        "adafactor-options-weight_decay-maximize",
        optimlab.Adafactor,
        dict(beta2_decay=-0.6, eps=(1e-20, 1e-2), d=2.0, weight_decay=0.05, maximize=True),
        twin(
            torch.optim.Adafactor,
            beta2_decay=-0.6,
            eps=(1e-20, 1e-2),
            d=2.0,
            weight_decay=0.05,
            maximize=True,
        ),
        tags=frozenset({"maximize", "weight_decay"}),
    ),
    # --- Muon: 2-D parameters as torch.optim.Muon, the rest AdamW ---------------------------
    # The generic tests' vectors (convergence, reference) take the AdamW step: its reference
    # is AdamW; test_layerwise.py checks the matrices against torch.optim.Muon.
    Case(
        "muon",
        optimlab.Muon,
        {},
        reference=partial(ref.adamw, beta1=0.9, beta2=0.95, epsilon=1e-10, weight_decay=0.0),
        quadratic=(0.1, 500),
        rosenbrock=(0.02, 1500),
    ),
    Case(
        "muon-options-weight_decay-maximize",
        optimlab.Muon,
        dict(
            weight_decay=0.05,
            momentum=0.9,
            nesterov=False,
            ns_steps=3,
            adjust_lr_fn="match_rms_adamw",
            adamw_betas=(0.8, 0.99),
            adamw_eps=1e-8,
            adamw_weight_decay=0.01,
            maximize=True,
        ),
        tags=frozenset({"maximize", "weight_decay"}),
    ),
    # --- LAMB ---------------------------------------------------------------------------------
    Case(
        "lamb",
        optimlab.LAMB,
        {},
        reference=ref.lamb,
        quadratic=(0.1, 400),
        tags=frozenset({NO_ROSENBROCK}),
    ),
    Case(
        "lamb-weight_decay-weight_norm_clamp",
        optimlab.LAMB,
        dict(betas=(0.8, 0.99), eps=1e-5, weight_decay=0.01, weight_norm_clamp=(0.0, 2.5)),
        reference=partial(
            ref.lamb,
            beta1=0.8,
            beta2=0.99,
            epsilon=1e-5,
            weight_decay=0.01,
            phi_bounds=(0.0, 2.5),
        ),
        quadratic=(0.1, 400),
        tags=frozenset({"weight_decay"}),
    ),
    Case(
        "lamb-weight_decay-maximize",
        optimlab.LAMB,
        dict(weight_decay=0.1, maximize=True),
        tags=frozenset({"maximize", "weight_decay"}),
    ),
    # --- LARS ---------------------------------------------------------------------------------
    # trust_coefficient 0.1 rather than 0.001: the generic tests use lr ~ 0.01, at which the
    # paper's 0.001 would move the weights by 1e-5 of their norm per step.
    Case(
        "lars",
        optimlab.LARS,
        dict(trust_coefficient=0.1),
        reference=partial(ref.lars, eta=0.1),
        quadratic=(3.0, 400),
        rosenbrock=(0.05, 1000),
    ),
    Case(
        "lars-weight_decay",
        optimlab.LARS,
        dict(trust_coefficient=0.1, weight_decay=0.05, momentum=0.8),
        reference=partial(ref.lars, eta=0.1, weight_decay=0.05, momentum=0.8),
        quadratic=(3.0, 400),
        tags=frozenset({"weight_decay"}),
    ),
    Case(
        # trust_coefficient 1: without momentum a step of 0.1 * lr * |w| is below bfloat16's
        # resolution at the generic tests' lr
        "lars-no_momentum",
        optimlab.LARS,
        dict(trust_coefficient=1.0, momentum=0.0),
        reference=partial(ref.lars, eta=1.0, momentum=0.0),
        quadratic=(0.3, 1000),
        tags=frozenset({NO_ROSENBROCK}),
    ),
    Case(
        "lars-exclude_1d",
        optimlab.LARS,
        dict(trust_coefficient=0.1, exclude_1d=True),
        # a vector is excluded: plain momentum with lr in the velocity
        reference=partial(ref.lars, eta=0.1, exclude_1d=True),
        quadratic=(1e-2, 400),
        rosenbrock=(2e-3, 2000),
    ),
    Case(
        "lars-exclude_1d-weight_decay-maximize",
        optimlab.LARS,
        dict(trust_coefficient=0.1, exclude_1d=True, weight_decay=0.01, maximize=True),
        tags=frozenset({"maximize", "weight_decay"}),
    ),
]


# (class, keyword arguments, exception type, regex the message must match); the generic checks
# (lr, weight_decay, maximize, foreach, nonfinite_grads) are added by registry.py for every class
BAD_INPUTS: list[tuple[type, dict[str, Any], type, str]] = [
    # Adafactor
    (
        optimlab.Adafactor,
        dict(beta2_decay=0.5),
        ValueError,
        r"beta2_decay should be <= 0 but is: 0\.5 \(beta2_decay\); expected a finite number <= 0",
    ),
    (
        optimlab.Adafactor,
        dict(beta2_decay="x"),
        TypeError,
        r"Invalid beta2_decay value: 'x' \(a str\)",
    ),
    (
        optimlab.Adafactor,
        dict(eps=1e-3),
        TypeError,
        r"Invalid epsilon value: 0\.001 \(eps\); expected a pair \(eps1, eps2\), eps1 may be None",
    ),
    (
        optimlab.Adafactor,
        dict(eps=(-1e-30, 1e-3)),
        ValueError,
        r"epsilon1 should be >= 0 but is: -1e-30 \(eps\[0\]\); expected a finite number >= 0",
    ),
    (optimlab.Adafactor, dict(eps=(None, None)), TypeError, r"Invalid eps\[1\] value: None"),
    (
        optimlab.Adafactor,
        dict(eps=(None, -1.0)),
        ValueError,
        r"epsilon2 should be >= 0 but is: -1\.0 \(eps\[1\]\)",
    ),
    (
        optimlab.Adafactor,
        dict(d=0.5),
        ValueError,
        r"Clipping threshold d should be >= 1 but is: 0\.5 \(d\); expected a finite number >= 1",
    ),
    (
        optimlab.Adafactor,
        dict(d=float("inf")),
        ValueError,
        r"Invalid d value: inf; expected a finite",
    ),
    # Muon
    (
        optimlab.Muon,
        dict(momentum=1.0),
        ValueError,
        r"Invalid momentum value: 1\.0; expected a number in \[0, 1\)",
    ),
    (
        optimlab.Muon,
        dict(nesterov=1),
        TypeError,
        r"Invalid nesterov value: 1; expected True or False",
    ),
    (
        optimlab.Muon,
        dict(ns_coefficients=(3.4, -4.8)),
        TypeError,
        r"Invalid ns_coefficients value: \(3\.4, -4\.8\); expected three numbers \(a, b, c\)",
    ),
    (
        optimlab.Muon,
        dict(ns_coefficients=(3.4, float("nan"), 2.0)),
        ValueError,
        r"Invalid ns_coefficients\[1\] value: nan; expected a finite number",
    ),
    (optimlab.Muon, dict(eps=-1e-7), ValueError, r"Invalid epsilon value: -1e-07 \(eps\)"),
    (
        optimlab.Muon,
        dict(ns_steps=0),
        ValueError,
        r"Invalid ns_steps value: 0; expected an integer from 1 to 99",
    ),
    (optimlab.Muon, dict(ns_steps=100), ValueError, r"Invalid ns_steps value: 100"),
    (optimlab.Muon, dict(ns_steps=5.0), TypeError, r"Invalid ns_steps value: 5\.0 \(a float\)"),
    (
        optimlab.Muon,
        dict(adjust_lr_fn="rms"),
        ValueError,
        r"Adjust learning rate function rms is not supported \(adjust_lr_fn='rms'\); expected one of "
        r"None, 'original', 'match_rms_adamw'",
    ),
    (optimlab.Muon, dict(adamw_lr=-1e-3), ValueError, r"Invalid adamw_lr value: -0\.001"),
    (optimlab.Muon, dict(adamw_lr="3e-4"), TypeError, r"Invalid adamw_lr value: '3e-4' \(a str\)"),
    (
        optimlab.Muon,
        dict(adamw_betas=(0.9, 1.0)),
        ValueError,
        r"Invalid beta parameter at index 1: 1\.0",
    ),
    (
        optimlab.Muon,
        dict(adamw_betas=0.9),
        TypeError,
        r"Invalid adamw_betas value: 0\.9; expected a pair",
    ),
    (optimlab.Muon, dict(adamw_eps=-1.0), ValueError, r"Invalid adamw_eps value: -1\.0"),
    (
        optimlab.Muon,
        dict(adamw_weight_decay=-0.1),
        ValueError,
        r"Invalid adamw_weight_decay value: -0\.1; expected a finite number >= 0",
    ),
    (optimlab.Muon, dict(use_muon=None), TypeError, r"Invalid use_muon value: None; expected True"),
    # LAMB
    (
        optimlab.LAMB,
        dict(betas=(1.0, 0.999)),
        ValueError,
        r"Invalid beta parameter at index 0: 1\.0",
    ),
    (optimlab.LAMB, dict(eps=-1e-6), ValueError, r"Invalid epsilon value: -1e-06 \(eps\)"),
    (
        optimlab.LAMB,
        dict(weight_norm_clamp=10.0),
        TypeError,
        r"Invalid weight_norm_clamp value: 10\.0; expected None or a pair \(low, high\)",
    ),
    (
        optimlab.LAMB,
        dict(weight_norm_clamp=(2.0, 1.0)),
        ValueError,
        r"Invalid weight_norm_clamp value: \(2\.0, 1\.0\); expected low <= high",
    ),
    (
        optimlab.LAMB,
        dict(weight_norm_clamp=(-1.0, 10.0)),
        ValueError,
        r"Invalid weight_norm_clamp\[0\] value: -1\.0",
    ),
    # LARS
    (optimlab.LARS, dict(momentum=-0.1), ValueError, r"Invalid momentum value: -0\.1"),
    (
        optimlab.LARS,
        dict(trust_coefficient=-1e-3),
        ValueError,
        r"Invalid trust_coefficient value: -0\.001; expected a finite number >= 0",
    ),
    (optimlab.LARS, dict(exclude_1d="yes"), TypeError, r"Invalid exclude_1d value: 'yes'"),
    # issue 13: steps that would overflow float32
    (
        optimlab.Muon,
        dict(ns_coefficients=(0.5, 0.5, 0.5)),
        ValueError,
        r"Invalid ns_coefficients=\(0\.5, 0\.5, 0\.5\) with ns_steps=5: the iteration s -> "
        r"a\*s \+ b\*s\*\*3 \+ c\*s\*\*5 takes singular values in \[0, 1\] up to 1\.32e\+18; "
        r"expected coefficients that keep them within 2\*\*25",
    ),
    (
        optimlab.LAMB,
        dict(lr=1e5),
        ValueError,
        r"Invalid learning rate: 100000\.0 \(lr\); expected a number in \[0, 2\*\*16\]: each step moves a tensor",
    ),
    (
        optimlab.Adafactor,
        dict(lr=1e5),
        ValueError,
        r"Invalid learning rate: 100000\.0 \(lr\); expected a number",
    ),
    (
        optimlab.LARS,
        dict(lr=1.0, trust_coefficient=1e6),
        ValueError,
        r"Invalid lr=1\.0 with trust_coefficient=1000000\.0; expected lr \* trust_coefficient "
        r"in \[0, 2\*\*16\]",
    ),
    (optimlab.LAMB, dict(weight_norm_clamp=(0.0, 1e308)), ValueError, r"weight_norm_clamp\[1\]"),
]
