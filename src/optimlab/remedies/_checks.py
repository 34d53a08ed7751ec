"""Schedule arguments, seeds and their derivation for the remedies.

The checks themselves are :mod:`optimlab.checks` (``real``, ``integer``), re-exported here.

Every error names its owner, the argument, the allowed range and the value, in the style of
:mod:`optimlab.schedules`: ``"GradientNoise: eta must be a finite number >= 0, got -1.0"``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .. import schedules
from ..checks import integer, real


def seed(owner: str, value: Any) -> int:
    """A seed: an integer in [0, 2**63)."""
    v = integer(owner, "seed", value, 0)
    if v >= 2**63:
        raise ValueError(f"{owner}: seed must be an integer in [0, 2**63), got {value!r}")
    return v


def as_schedule(owner: str, arg: str, value: Any) -> Callable[[int], float]:
    """Turn a schedule argument into a pure function of the step.

    Accepted: a number (a constant), an :mod:`optimlab.schedules` schedule, a spec string such as
    ``"exponential_decay:lr=1.0,decay_rate=0.01,decay_steps=1000"``, a ``to_dict()`` mapping, or
    any callable ``f(step) -> float``. The stateful ``ReduceOnPlateau`` is refused: its value
    depends on a metric, not on the step, so a resumed run could not reproduce it.
    """
    if isinstance(value, schedules.ReduceOnPlateau):
        raise TypeError(
            f"{owner}: {arg} must be a pure schedule of the step, got the stateful "
            f"{value!r}; use a schedule such as exponential_decay or cosine_decay"
        )
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return schedules.constant(real(owner, arg, value))
    if isinstance(value, str):
        try:
            value = schedules.from_spec(value)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{owner}: {arg}: {err}") from None
    elif isinstance(value, Mapping):
        try:
            value = schedules.from_dict(value)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{owner}: {arg}: {err}") from None
    if isinstance(value, schedules.ReduceOnPlateau):  # it may also come from a spec or a dict
        return as_schedule(owner, arg, value)
    if not callable(value):
        raise TypeError(
            f"{owner}: {arg} must be a number, a schedule, a schedule spec string or dict, or a "
            f"callable step -> float, got {value!r}"
        )
    return value


def scheduled_value(owner: str, arg: str, schedule: Callable[[int], float], step: int) -> float:
    """``schedule(step)``, checked to be a finite number >= 0 (a custom callable may not be)."""
    value = schedule(step)
    try:
        return real(owner, f"{arg} at step {step}", value)
    except TypeError:
        raise TypeError(
            f"{owner}: {arg} at step {step} must be a real number, got {value!r} from {schedule!r}"
        ) from None


def derive_seed(seed: int, *keys: int) -> int:
    """A seed for one purpose of a run, independent of the seeds for its other purposes.

    Two generators seeded with the same integer give the same stream, so a run that draws its
    start point, its batches and its noise from ``seed`` alike would correlate them; a
    ``SeedSequence`` hash of ``(seed, *keys)`` separates them.
    """
    state = np.random.SeedSequence([seed, *keys]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])  # < 2**63, so torch.manual_seed takes it
