"""Learning-rate schedules as pure functions of the step.

A schedule is an immutable callable ``schedule(step) -> float``; ``step`` counts optimizer
updates from 0 and must be a non-negative integer. A schedule keeps no state, so the learning
rate of any step can be asked for in any order, and resuming training needs only the step
count.

==========================  ===============================================================
name                        learning rate at step ``t``
==========================  ===============================================================
``constant``                ``lr``
``step_decay``              ``lr * gamma ** (t // step_size)``  (torch ``StepLR``)
``multistep``               ``lr * gamma ** #{m in milestones : m <= t}``  (``MultiStepLR``)
``exponential_decay``       ``lr * decay_rate ** (t / decay_steps)``
``inverse_time_decay``      ``lr / (1 + decay_rate * t / decay_steps)``
``piecewise_constant``      ``values[i]`` for ``boundaries[i-1] < t <= boundaries[i]``
``polynomial_decay``        ``(lr - end_lr) * (1 - min(t, T) / T) ** power + end_lr``
``cosine_decay``            ``end_lr + (lr - end_lr) * (1 + cos(pi * min(t, T) / T)) / 2``
``linear_warmup``           linear ramp up to a wrapped schedule over ``warmup_steps``
``warm_restarts``           SGDR: cosine decay restarted every period (``*WarmRestarts``)
``one_cycle``               torch ``OneCycleLR``
``join``                    schedules one after another (optax ``join_schedules``)
``reduce_on_plateau``       stateful: divides the lr when a metric stops improving
==========================  ===============================================================

Every schedule serializes to a plain dict ``{"name": ..., **arguments}`` with ``to_dict()``;
:func:`from_dict` rebuilds it and :func:`from_spec` parses a one-line spec. :data:`SCHEDULES`
maps each name to its class, whose docstring's first line describes it.

    >>> from optimlab.schedules import cosine_decay, from_dict, from_spec, linear_warmup
    >>> s = from_spec("step_decay:lr=0.1,gamma=0.5,step_size=1000")
    >>> s(999), s(1000), s(2500)
    (0.1, 0.05, 0.025)
    >>> s.to_dict()
    {'name': 'step_decay', 'lr': 0.1, 'gamma': 0.5, 'step_size': 1000}
    >>> w = linear_warmup(cosine_decay(0.1, decay_steps=1000), warmup_steps=100)
    >>> from_dict(w.to_dict()) == w
    True

:func:`drive` applies a schedule to the param groups of any ``torch.optim.Optimizer``, and
:class:`ReduceOnPlateau` is the one stateful schedule, driven by a metric.

The package, by concern: :mod:`~optimlab.schedules.base` (:class:`Schedule`, the registry
:data:`SCHEDULES` and the checks the schedules share), :mod:`~optimlab.schedules.decays`,
:mod:`~optimlab.schedules.composite`, :mod:`~optimlab.schedules.plateau`,
:mod:`~optimlab.schedules.serialize` and :mod:`~optimlab.schedules.driver`. A schedule is
declared once, by its class (see :func:`~optimlab.schedules.base.register`); the registry makes
it known to :func:`from_dict`, :func:`from_spec`, ``optimlab list schedules``, this package's
names and ``__all__``, and this package's doctests.
"""

from __future__ import annotations

# Importing a module declares its schedules, in the order of `optimlab list schedules`.
# isort: off
from . import decays  # noqa: F401
from . import composite  # noqa: F401
from . import plateau  # noqa: F401

# isort: on
from . import base
from .base import SCHEDULES, Schedule
from .driver import ScheduleDriver, drive
from .serialize import as_schedule, from_dict, from_spec, scheduled_value

# Every registered class by its name, and every pure schedule by its spec name too (the
# documented constructors, step_decay = StepDecay): the registry is the one list of schedules.
_SCHEDULE_NAMES = base.exports()
globals().update(_SCHEDULE_NAMES)

__all__ = [
    "SCHEDULES",
    "Schedule",
    "ScheduleDriver",
    "as_schedule",
    "drive",
    "from_dict",
    "from_spec",
    "scheduled_value",
]
__all__ += _SCHEDULE_NAMES
__all__.sort()

# doctest.testmod(optimlab.schedules) runs the examples of every schedule, wherever its class is
# defined, with this package's names (step_decay, from_dict, ...) in scope.
__test__ = {cls.__name__: cls for cls in SCHEDULES.values()}
__test__.update(from_dict=from_dict, from_spec=from_spec, drive=drive)
