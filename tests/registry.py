"""One registry describing every optimizer configuration the tests run.

Each :class:`Case` names an optimlab class and its arguments, and what it is checked against:
the ``torch.optim`` class that computes the same update (``torch_twin``), an independent NumPy
transcription of the notes' formula (``reference``), and the step budget within which it must
reach the minimum of the ill-conditioned quadratic and of Rosenbrock. Generic tests run over
all cases, so adding an optimizer here adds its tests. Bad inputs are listed in ``BAD_INPUTS``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import references as ref
import registry_adam_family
import registry_classic
import registry_layerwise
import registry_tuning_free
import torch
from case import Case, accepted_arguments, twin

import optimlab

CASES: list[Case] = [
    # --- SGD: torch.optim.SGD in every configuration ---------------------------------------
    Case(
        "sgd",
        optimlab.SGD,
        {},
        twin(torch.optim.SGD),
        reference=ref.gradient_descent,
        quadratic=(1e-2, 1500),
        rosenbrock=(2e-3, 20000),
    ),
    Case(
        "sgd-weight_decay-maximize",
        optimlab.SGD,
        dict(weight_decay=1e-2, maximize=True),
        twin(torch.optim.SGD, weight_decay=1e-2, maximize=True),
        tags=frozenset({"maximize"}),
    ),
    Case(
        "sgd-momentum",
        optimlab.SGD,
        dict(momentum=0.9),
        twin(torch.optim.SGD, momentum=0.9),
        quadratic=(1e-2, 1500),
        rosenbrock=(1e-3, 5000),
    ),
    Case(
        "sgd-momentum-dampening-weight_decay",
        optimlab.SGD,
        dict(momentum=0.8, dampening=0.3, weight_decay=1e-3),
        twin(torch.optim.SGD, momentum=0.8, dampening=0.3, weight_decay=1e-3),
        tags=frozenset({"weight_decay"}),
    ),
    Case(
        "sgd-nesterov",
        optimlab.SGD,
        dict(momentum=0.9, nesterov=True),
        twin(torch.optim.SGD, momentum=0.9, nesterov=True),
        quadratic=(1e-2, 1500),
        rosenbrock=(1e-3, 5000),
    ),
    # --- the notes' momentum forms ---------------------------------------------------------
    Case(
        "momentum-ema",
        optimlab.Momentum,
        dict(momentum=0.9),
        reference=partial(ref.ema_momentum, beta=0.9),
        quadratic=(1e-2, 1500),
        rosenbrock=(1e-2, 5000),
    ),
    Case(
        "momentum-ema-bias_correction",
        optimlab.Momentum,
        dict(momentum=0.9, bias_correction=True),
        reference=partial(ref.ema_momentum, beta=0.9, bias_correction=True),
        quadratic=(1e-2, 1500),
        rosenbrock=(3e-3, 8000),
    ),
    Case(
        "momentum-ema-nesterov",
        optimlab.Momentum,
        dict(momentum=0.9, nesterov=True),
        reference=lambda w0, grad, lrs: ref.ema_nesterov(w0, grad, lrs[0], 0.9, len(lrs)),
        constant_lr_only=True,
        quadratic=(1e-2, 1500),
        rosenbrock=(1e-2, 5000),
    ),
    Case(
        "momentum-heavy_ball",
        optimlab.Momentum,
        dict(momentum=0.9, form="heavy_ball"),
        reference=partial(ref.heavy_ball, beta=0.9),
        quadratic=(1e-3, 1500),
        rosenbrock=(1e-3, 5000),
    ),
    Case(
        "momentum-heavy_ball-nesterov",
        optimlab.Momentum,
        dict(momentum=0.9, form="heavy_ball", nesterov=True),
        reference=partial(ref.heavy_ball_nesterov, beta=0.9),
        quadratic=(1e-3, 1500),
        rosenbrock=(1e-3, 5000),
    ),
    Case(
        "momentum-weight_decay-maximize",
        optimlab.Momentum,
        dict(momentum=0.5, weight_decay=1e-2, maximize=True),
        tags=frozenset({"maximize"}),
    ),
    # --- RMSprop ---------------------------------------------------------------------------
    Case(
        "rmsprop",
        optimlab.RMSprop,
        {},
        twin(torch.optim.RMSprop),
        reference=partial(ref.rmsprop, beta=0.99, epsilon=1e-8, eps_inside_sqrt=False),
        quadratic=(1e-2, 1500),
        rosenbrock=(1e-3, 20000),
    ),
    Case(
        "rmsprop-eps_inside_sqrt-keras",
        optimlab.RMSprop,
        dict(alpha=0.9, eps=1e-7, eps_inside_sqrt=True),
        reference=partial(ref.rmsprop, beta=0.9, epsilon=1e-7, eps_inside_sqrt=True),
        quadratic=(1e-3, 2500),
        rosenbrock=(1e-3, 20000),
    ),
    Case(
        "rmsprop-notes-large-eps",
        optimlab.RMSprop,
        dict(alpha=0.9, eps=1e-3, eps_inside_sqrt=True),
        reference=partial(ref.rmsprop, beta=0.9, epsilon=1e-3, eps_inside_sqrt=True),
        quadratic=(1e-3, 2500),
    ),
    Case(
        "rmsprop-centered-momentum",
        optimlab.RMSprop,
        dict(centered=True, momentum=0.9),
        twin(torch.optim.RMSprop, centered=True, momentum=0.9),
        quadratic=(1e-3, 1500),
        rosenbrock=(1e-4, 20000),
    ),
    Case(
        "rmsprop-centered-eps_inside_sqrt",
        optimlab.RMSprop,
        dict(centered=True, eps_inside_sqrt=True, eps=1e-6),
        quadratic=(1e-2, 1500),
        rosenbrock=(1e-3, 20000),
    ),
    Case(
        "rmsprop-weight_decay-maximize",
        optimlab.RMSprop,
        dict(weight_decay=1e-2, momentum=0.5, maximize=True),
        twin(torch.optim.RMSprop, weight_decay=1e-2, momentum=0.5, maximize=True),
        tags=frozenset({"maximize"}),
    ),
    # --- Adam and AdamW --------------------------------------------------------------------
    Case(
        "adam",
        optimlab.Adam,
        {},
        twin(torch.optim.Adam),
        reference=partial(
            ref.adam,
            beta1=0.9,
            beta2=0.999,
            epsilon=1e-8,
            bias_correction=True,
            eps_inside_sqrt=False,
        ),
        quadratic=(1e-2, 1500),
        rosenbrock=(1e-2, 5000),
    ),
    Case(
        "adam-no_bias_correction-eps_inside_sqrt",
        optimlab.Adam,
        dict(bias_correction=False, eps_inside_sqrt=True),
        reference=partial(
            ref.adam,
            beta1=0.9,
            beta2=0.999,
            epsilon=1e-8,
            bias_correction=False,
            eps_inside_sqrt=True,
        ),
        quadratic=(1e-2, 1500),
        rosenbrock=(1e-2, 5000),
    ),
    Case(
        "adam-no_bias_correction",
        optimlab.Adam,
        dict(bias_correction=False, eps=1e-4),
        reference=partial(
            ref.adam,
            beta1=0.9,
            beta2=0.999,
            epsilon=1e-4,
            bias_correction=False,
            eps_inside_sqrt=False,
        ),
        quadratic=(1e-2, 1500),
        rosenbrock=(1e-2, 5000),
    ),
    Case(
        "adam-eps_inside_sqrt-seed004",
        optimlab.Adam,
        dict(eps_inside_sqrt=True, eps=1e-4),
        reference=partial(
            ref.adam,
            beta1=0.9,
            beta2=0.999,
            epsilon=1e-4,
            bias_correction=True,
            eps_inside_sqrt=True,
        ),
        quadratic=(1e-2, 1500),
        rosenbrock=(1e-2, 5000),
    ),
    Case(
        "adam-amsgrad-weight_decay-maximize",
        optimlab.Adam,
        dict(amsgrad=True, weight_decay=1e-2, maximize=True),
        twin(torch.optim.Adam, amsgrad=True, weight_decay=1e-2, maximize=True),
        tags=frozenset({"maximize"}),
    ),
    Case(
        "adam-amsgrad",
        optimlab.Adam,
        dict(amsgrad=True),
        twin(torch.optim.Adam, amsgrad=True),
        quadratic=(1e-2, 1500),
        rosenbrock=(1e-2, 20000),
    ),
    Case(
        "adamw",
        optimlab.AdamW,
        dict(weight_decay=1e-2),
        twin(torch.optim.AdamW),
        quadratic=(1e-2, 1500),
        rosenbrock=(1e-2, 5000),
        tags=frozenset({"weight_decay"}),
    ),
    Case(
        "adamw-amsgrad",
        optimlab.AdamW,
        dict(weight_decay=0.1, amsgrad=True),
        twin(torch.optim.AdamW, weight_decay=0.1, amsgrad=True),
        tags=frozenset({"weight_decay"}),
    ),
]

# The optimizers beyond the notes (issue 8) live in one registry module per family.
FAMILIES = (registry_adam_family, registry_classic, registry_layerwise, registry_tuning_free)
for _family in FAMILIES:
    CASES += _family.CASES

#: every optimizer class, from optimlab's own registry: a class registered there without cases
#: here fails test_registry.py
CLASSES = [entry.cls for entry in optimlab.REGISTRY.values()]

CASE_IDS = [c.id for c in CASES]
assert len(set(CASE_IDS)) == len(CASE_IDS), "registry case ids must be unique"

# (class, keyword arguments, exception type, regex the message must match)
BAD_INPUTS: list[tuple[type, dict[str, Any], type, str]] = []
for _cls in CLASSES:
    _generic = [
        (
            _cls,
            dict(lr=-1.0),
            ValueError,
            r"(?:Invalid learning rate|Learning rate should be >= 0 but is): -1\.0 \(lr\); expected a finite number >= 0",
        ),
        (
            _cls,
            dict(lr=float("nan")),
            ValueError,
            r"(?:Invalid learning rate|Learning rate should be >= 0 but is): nan \(lr\); expected a finite number",
        ),
        (
            _cls,
            dict(lr=float("inf")),
            ValueError,
            r"Invalid learning rate: inf \(lr\); expected a finite number",
        ),
        (
            _cls,
            dict(lr="0.1"),
            TypeError,
            r"Invalid learning rate: '0\.1' \(lr, a str\); expected a real number",
        ),
        (_cls, dict(lr=None), TypeError, r"Invalid learning rate: None \(lr, a NoneType\)"),
        (
            _cls,
            dict(weight_decay=-0.1),
            ValueError,
            r"(?:Invalid weight_decay value|weight.decay should be >= 0 but is): -0\.1",
        ),
        # issue 13: beyond 2**32 (2**16 for relative steps) a step can overflow float32
        (
            _cls,
            dict(lr=1e30),
            ValueError,
            r"Invalid learning rate: 1e\+30 \(lr\); expected a number in \[0, 2\*\*(32|16)\]: ",
        ),
        (
            _cls,
            dict(lr=10**400),
            ValueError,
            r"Invalid learning rate: 1000+ \(lr\); expected a finite number",
        ),
        (
            _cls,
            dict(weight_decay=1e300),
            ValueError,
            r"Invalid weight_decay value: 1e\+300; expected a",
        ),
        (
            _cls,
            dict(maximize="yes"),
            TypeError,
            r"Invalid maximize value: 'yes'; expected True or False",
        ),
        (_cls, dict(foreach="yes"), TypeError, r"Invalid foreach value: 'yes'"),
        (
            _cls,
            dict(nonfinite_grads="warn"),
            ValueError,
            r"Invalid nonfinite_grads value: 'warn'; expected one of 'raise', 'skip', 'ignore'",
        ),
    ]
    # Every class gets the checks for the arguments it takes.
    _accepted = accepted_arguments(_cls)
    BAD_INPUTS += [bad for bad in _generic if set(bad[1]) <= _accepted]
BAD_INPUTS += [
    (
        optimlab.SGD,
        dict(momentum=1.0),
        ValueError,
        r"Invalid momentum value: 1\.0; expected a number in \[0, 1\)",
    ),
    (optimlab.SGD, dict(momentum=-0.5), ValueError, r"Invalid momentum value: -0\.5"),
    (optimlab.SGD, dict(dampening=-0.1), ValueError, r"Invalid dampening value: -0\.1"),
    (
        optimlab.SGD,
        dict(nesterov=True),
        ValueError,
        r"Invalid nesterov=True with momentum=0\.0 and dampening=0\.0; Nesterov momentum needs",
    ),
    (
        optimlab.SGD,
        dict(nesterov=True, momentum=0.9, dampening=0.1),
        ValueError,
        r"Invalid nesterov=True with momentum=0\.9 and dampening=0\.1",
    ),
    (
        optimlab.Momentum,
        dict(beta=1.0),
        ValueError,
        r"Invalid beta value: 1\.0; expected a number in \[0, 1\)",
    ),
    (optimlab.Momentum, dict(beta=-0.1), ValueError, r"Invalid beta value: -0\.1"),
    (optimlab.Momentum, dict(beta=float("nan")), ValueError, r"Invalid beta value: nan"),
    (
        optimlab.Momentum,
        dict(form="pid"),
        ValueError,
        r"Invalid form value: 'pid'; expected one of 'ema', 'heavy_ball'",
    ),
    (
        optimlab.Momentum,
        dict(form="heavy_ball", bias_correction=True),
        ValueError,
        r"Invalid bias_correction=True with form='heavy_ball'",
    ),
    (
        optimlab.RMSprop,
        dict(alpha=1.0),
        ValueError,
        r"Invalid alpha value: 1\.0; expected a number in \[0, 1\)",
    ),
    (optimlab.RMSprop, dict(alpha=-0.01), ValueError, r"Invalid alpha value: -0\.01"),
    (optimlab.RMSprop, dict(momentum=1.5), ValueError, r"Invalid momentum value: 1\.5"),
    (
        optimlab.RMSprop,
        dict(alpha=0.0, centered=True),
        ValueError,
        r"Invalid alpha=0\.0 with centered=True; expected alpha in \[2\*\*-23, 1\)",
    ),
    (
        optimlab.Adam,
        dict(eps=1e10),
        ValueError,
        r"Invalid epsilon value: 10000000000\.0 \(eps\); expected a number in \[0,",
    ),
    (
        optimlab.RMSprop,
        dict(eps=-1e-8),
        ValueError,
        r"Invalid epsilon value: -1e-08 \(eps\); expected a finite number >= 0",
    ),
    (
        optimlab.RMSprop,
        dict(centered=1),
        TypeError,
        r"Invalid centered value: 1; expected True or False",
    ),
    (
        optimlab.RMSprop,
        dict(eps_inside_sqrt=None),
        TypeError,
        r"Invalid eps_inside_sqrt value: None",
    ),
    (
        optimlab.Adam,
        dict(betas=(1.0, 0.999)),
        ValueError,
        r"Invalid beta parameter at index 0: 1\.0 \(.*\); expected a number in \[0, 1\)",
    ),
    (
        optimlab.Adam,
        dict(betas=(0.9, -0.1)),
        ValueError,
        r"Invalid beta parameter at index 1: -0\.1",
    ),
    (optimlab.Adam, dict(betas=(0.9, 1.5)), ValueError, r"Invalid beta parameter at index 1: 1\.5"),
    (optimlab.Adam, dict(betas=0.9), TypeError, r"Invalid betas value: 0\.9; expected a pair"),
    (optimlab.Adam, dict(betas=(0.9, "x")), TypeError, r"Invalid betas\[1\] value: 'x'"),
    (optimlab.Adam, dict(eps=-1.0), ValueError, r"Invalid epsilon value: -1\.0 \(eps\)"),
    (optimlab.Adam, dict(amsgrad="no"), TypeError, r"Invalid amsgrad value: 'no'"),
    (optimlab.Adam, dict(bias_correction=0), TypeError, r"Invalid bias_correction value: 0"),
    (
        optimlab.AdamW,
        dict(betas=(0.9, 1.0)),
        ValueError,
        r"Invalid beta parameter at index 1: 1\.0",
    ),
    (optimlab.AdamW, dict(weight_decay=-1e-2), ValueError, r"Invalid weight_decay value: -0\.01"),
]
for _family in FAMILIES:
    BAD_INPUTS += _family.BAD_INPUTS
