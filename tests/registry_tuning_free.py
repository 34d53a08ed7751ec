"""Registry cases for ScheduleFreeAdamW, ScheduleFreeSGD and Prodigy (see ``registry.py``)."""

from __future__ import annotations

from functools import partial
from typing import Any

import references_tuning_free as ref
from case import Case

import optimlab

SGD_VARIANT = dict(momentum=0.8, weight_decay=1e-2, warmup_steps=10, r=1.0, weight_lr_power=1.0)
ADAMW_VARIANT = dict(betas=(0.95, 0.99), eps=1e-6, weight_decay=0.1, warmup_steps=4, r=0.5)
# test_notes takes 80 steps with lr = 0.02: Prodigy's lr multiplies its estimate d, so from the
# default d0 = 1e-6 it moves too little there to compare much; these start higher (the
# estimate still grows tenfold or more). The default d0 is compared with lr near 1 in
# test_tuning_free.py.
PRODIGY_D0 = dict(d0=1e-3)
PRODIGY_VARIANT = dict(
    use_bias_correction=True,
    decouple=False,
    weight_decay=1e-2,
    beta3=0.9,
    growth_rate=1.2,
    d0=1e-2,
    d_coef=2.0,
)
PRODIGY_DECOUPLED = dict(d0=1e-3, weight_decay=0.05)
PRODIGY_BETA1_0 = dict(d0=1e-3, betas=(0.0, 0.999))
# Prodigy's first steps are d0 * lr long (1e-8 in the generic bfloat16 test, lr = 0.01): below
# bfloat16's resolution at 1, so the parameters never move, and d, which grows only with the
# distance travelled, never grows. test_bfloat16_parameters must not ask these cases to move
# (test_tuning_free.py checks a bfloat16 run whose steps are representable).
TINY_FIRST_STEPS = "tiny_first_steps"

CASES: list[Case] = [
    # --- schedule-free SGD ---------------------------------------------------------------
    Case(
        "schedule_free_sgd",
        optimlab.ScheduleFreeSGD,
        {},
        reference=ref.schedule_free_sgd,
        quadratic=(2e-2, 500),
        rosenbrock=(2e-3, 5000),
    ),
    Case(
        "schedule_free_sgd-warmup-weight_decay-r",
        optimlab.ScheduleFreeSGD,
        SGD_VARIANT,
        reference=partial(ref.schedule_free_sgd, **SGD_VARIANT),
        quadratic=(2e-2, 800),
        tags=frozenset({"weight_decay"}),
    ),
    Case(
        "schedule_free_sgd-weight_decay-maximize",
        optimlab.ScheduleFreeSGD,
        dict(weight_decay=1e-2, maximize=True),
        tags=frozenset({"maximize"}),
    ),
    # --- schedule-free AdamW -------------------------------------------------------------
    Case(
        "schedule_free_adamw",
        optimlab.ScheduleFreeAdamW,
        {},
        reference=ref.schedule_free_adamw,
        quadratic=(1e-1, 500),
        rosenbrock=(3e-2, 3000),
    ),
    Case(
        "schedule_free_adamw-warmup-weight_decay-r",
        optimlab.ScheduleFreeAdamW,
        ADAMW_VARIANT,
        reference=partial(ref.schedule_free_adamw, **ADAMW_VARIANT),
        quadratic=(1e-1, 800),
        tags=frozenset({"weight_decay"}),
    ),
    Case(
        "schedule_free_adamw-weight_decay-maximize",
        optimlab.ScheduleFreeAdamW,
        dict(weight_decay=1e-2, maximize=True),
        tags=frozenset({"maximize"}),
    ),
    # --- Prodigy (lr = 1, the default, on both problems: no tuning) ------------------------
    Case(
        "prodigy",
        optimlab.Prodigy,
        {},
        quadratic=(1.0, 400),
        rosenbrock=(1.0, 4000),
        tags=frozenset({TINY_FIRST_STEPS}),
    ),
    Case(
        "prodigy-d0",
        optimlab.Prodigy,
        PRODIGY_D0,
        reference=partial(ref.prodigy, **PRODIGY_D0),
        quadratic=(1.0, 400),
        rosenbrock=(1.0, 4000),
        tags=frozenset({TINY_FIRST_STEPS}),
    ),
    Case(
        "prodigy-bias_correction-coupled_decay-growth_rate",
        optimlab.Prodigy,
        PRODIGY_VARIANT,
        reference=partial(ref.prodigy, **PRODIGY_VARIANT),
        quadratic=(1.0, 400),
        tags=frozenset({"weight_decay", TINY_FIRST_STEPS}),
    ),
    Case(
        "prodigy-decoupled_decay",
        optimlab.Prodigy,
        PRODIGY_DECOUPLED,
        reference=partial(ref.prodigy, **PRODIGY_DECOUPLED),
        quadratic=(1.0, 400),
        tags=frozenset({"weight_decay", TINY_FIRST_STEPS}),
    ),
    Case(
        "prodigy-beta1_0",
        optimlab.Prodigy,
        PRODIGY_BETA1_0,
        reference=partial(ref.prodigy, **PRODIGY_BETA1_0),
        quadratic=(1.0, 400),
        tags=frozenset({TINY_FIRST_STEPS}),
    ),
    Case(
        "prodigy-weight_decay-maximize",
        optimlab.Prodigy,
        dict(weight_decay=1e-2, maximize=True),
        tags=frozenset({"maximize", TINY_FIRST_STEPS}),
    ),
]


_SF = (optimlab.ScheduleFreeSGD, optimlab.ScheduleFreeAdamW)
# (class, keyword arguments, exception type, regex the message must match); the generic checks
# (lr, weight_decay, maximize, foreach, nonfinite_grads) are added by registry.py for every class
BAD_INPUTS: list[tuple[type, dict[str, Any], type, str]] = [
    *[
        bad
        for cls in _SF
        for bad in [
            (
                cls,
                dict(warmup_steps=-1),
                ValueError,
                r"Invalid warmup_steps value: -1; expected an integer >= 0",
            ),
            (
                cls,
                dict(warmup_steps=10.0),
                TypeError,
                r"Invalid warmup_steps value: 10\.0 \(a float\); expected an integer >= 0",
            ),
            (
                cls,
                dict(warmup_steps=True),
                TypeError,
                r"Invalid warmup_steps value: True \(a bool\)",
            ),
            (
                cls,
                dict(r=-0.5),
                ValueError,
                r"Invalid r value: -0\.5; expected a finite number >= 0",
            ),
            (
                cls,
                dict(r=float("nan")),
                ValueError,
                r"Invalid r value: nan; expected a finite number",
            ),
            (
                cls,
                dict(weight_lr_power=-2.0),
                ValueError,
                r"Invalid weight_lr_power value: -2\.0; expected a finite number >= 0",
            ),
            (
                cls,
                dict(weight_lr_power="2"),
                TypeError,
                r"Invalid weight_lr_power value: '2' \(a str\)",
            ),
        ]
    ],
    (
        optimlab.ScheduleFreeSGD,
        dict(momentum=0.0),
        ValueError,
        r"Invalid momentum value: 0\.0; expected a number in \(0, 1\): schedule-free evaluates",
    ),
    (optimlab.ScheduleFreeSGD, dict(momentum=1.0), ValueError, r"Invalid momentum value: 1\.0"),
    (optimlab.ScheduleFreeSGD, dict(momentum=None), TypeError, r"Invalid momentum value: None"),
    (
        optimlab.ScheduleFreeAdamW,
        dict(betas=(0.0, 0.999)),
        ValueError,
        r"Invalid betas\[0\] value: 0\.0; expected a number in \(0, 1\)",
    ),
    (
        optimlab.ScheduleFreeAdamW,
        dict(betas=(0.9, 1.0)),
        ValueError,
        r"Invalid beta parameter at index 1: 1\.0 \(.*\); expected a number in \[0, 1\)",
    ),
    (
        optimlab.ScheduleFreeAdamW,
        dict(betas=0.9),
        TypeError,
        r"Invalid betas value: 0\.9; expected a",
    ),
    (
        optimlab.ScheduleFreeAdamW,
        dict(eps=-1e-8),
        ValueError,
        r"Invalid epsilon value: -1e-08 \(eps\)",
    ),
    (
        optimlab.Prodigy,
        dict(d0=0.0),
        ValueError,
        r"Invalid d0 value: 0\.0; expected a finite number > 0",
    ),
    (optimlab.Prodigy, dict(d0=-1e-6), ValueError, r"Invalid d0 value: -1e-06; expected a finite"),
    (
        optimlab.Prodigy,
        dict(d0=float("inf")),
        ValueError,
        r"Invalid d0 value: inf; expected a finite",
    ),
    (
        optimlab.Prodigy,
        dict(d_coef=0.0),
        ValueError,
        r"Invalid d_coef value: 0\.0; expected a finite",
    ),
    (optimlab.Prodigy, dict(d_coef="1"), TypeError, r"Invalid d_coef value: '1' \(a str\)"),
    (
        optimlab.Prodigy,
        dict(growth_rate=0.5),
        ValueError,
        r"Invalid growth_rate value: 0\.5; expected a number >= 1 \(float\('inf'\) for no limit\)",
    ),
    (
        optimlab.Prodigy,
        dict(growth_rate=float("nan")),
        ValueError,
        r"Invalid growth_rate value: nan",
    ),
    (optimlab.Prodigy, dict(growth_rate=None), TypeError, r"Invalid growth_rate value: None"),
    (
        optimlab.Prodigy,
        dict(beta3=1.0),
        ValueError,
        r"Invalid beta3 value: 1\.0; expected None or a number in \[0, 1\)",
    ),
    (optimlab.Prodigy, dict(beta3=-0.1), ValueError, r"Invalid beta3 value: -0\.1"),
    (optimlab.Prodigy, dict(beta3="0.9"), TypeError, r"Invalid beta3 value: '0\.9' \(a str\)"),
    (
        optimlab.Prodigy,
        dict(betas=(0.9, 1.0)),
        ValueError,
        r"Invalid beta parameter at index 1: 1\.0",
    ),
    (
        optimlab.Prodigy,
        dict(eps=0.0),
        ValueError,
        r"Invalid epsilon value: 0\.0 \(eps\); expected a finite number > 0",
    ),
    (
        optimlab.Prodigy,
        dict(decouple="yes"),
        TypeError,
        r"Invalid decouple value: 'yes'; expected True",
    ),
    (
        optimlab.Prodigy,
        dict(use_bias_correction=1),
        TypeError,
        r"Invalid use_bias_correction value: 1",
    ),
    (
        optimlab.Prodigy,
        dict(safeguard_warmup=None),
        TypeError,
        r"Invalid safeguard_warmup value: None",
    ),
    (
        optimlab.Prodigy,
        dict(fused=True),
        ValueError,
        r"Invalid fused=True: Prodigy has no fused path \(its step size comes from a dot product",
    ),
    # issue 13: r=120958022030832608 was accepted and step() then hung (an int power)
    *[
        bad
        for cls in _SF
        for bad in [
            (
                cls,
                dict(r=120958022030832608),
                ValueError,
                r"Invalid r value: 120958022030832608; expected a number in \[0, 18\.3208\]: the "
                r"average weighs step t by t\*\*r",
            ),
            (
                cls,
                dict(r=10**7),
                ValueError,
                r"Invalid r value: 10000000; expected a number in \[0, 18",
            ),
            (cls, dict(r=10**400), ValueError, r"Invalid r value: 1000+; expected a finite number"),
            (
                cls,
                dict(lr=2.0**32, weight_lr_power=31.0),
                ValueError,
                r"Invalid weight_lr_power=31\.0 with r=0\.0 and lr=4294967296\.0: .* expected "
                r"\(r \+ 1\) \* 53 \+ weight_lr_power \* log2\(lr\) <= 1024",
            ),
        ]
    ],
    (
        optimlab.Prodigy,
        dict(d0=1e-300),
        ValueError,
        r"Invalid d0 value: 1e-300; expected a number in \[2\*\*-32, 2\*\*32\]",
    ),
    (
        optimlab.Prodigy,
        dict(d0=1e30),
        ValueError,
        r"Invalid d0 value: 1e\+30; expected a number in",
    ),
    (
        optimlab.Prodigy,
        dict(growth_rate=10**400),
        ValueError,
        r"Invalid growth_rate value: 1000+; expected a number >= 1 \(float\('inf'\) for no limit\)",
    ),
]
