"""Argument checks for the functional parts (schedules, escape remedies, plans, ...).

Every message names the owner, the argument, the allowed range and the value, so a bad config
line can be fixed without reading the code: ``"step_decay: step_size must be an integer >= 1,
got 0"``. (Optimizer hyperparameters use torch's style instead, ``"Invalid lr: -1.0; ..."``,
in :mod:`optimlab.optim.base`.)

>>> real("GradientNoise", "eta", -1.0)
Traceback (most recent call last):
...
ValueError: GradientNoise: eta must be a finite number >= 0, got -1.0
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence
from typing import Any


def range_text(low: float | None, low_open: bool, high: float | None, high_open: bool) -> str:
    if high is None:
        return f"a finite number {'>' if low_open else '>='} {low:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def real(
    owner: str,
    arg: str,
    value: Any,
    low: float = 0.0,
    *,
    low_open: bool = False,
    high: float | None = None,
    high_open: bool = False,
) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {arg} must be a real number, got {value!r}")
    v = float(value)
    ok = math.isfinite(v) and (v > low if low_open else v >= low)
    if high is not None:
        ok = ok and (v < high if high_open else v <= high)
    if not ok:
        allowed = range_text(low, low_open, high, high_open)
        raise ValueError(f"{owner}: {arg} must be {allowed}, got {value!r}")
    return v


def integer(owner: str, arg: str, value: Any, low: int) -> int:
    """An integer ``>= low``: Python, NumPy or 0-d torch integers, and integral floats (configs
    and specs write 1e3 or 1000.0); never a bool."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(f"{owner}: {arg} must be an integer >= {low}, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{owner}: {arg} must be an integer >= {low}, got {value!r}") from None
    if number < low:
        raise ValueError(f"{owner}: {arg} must be an integer >= {low}, got {value!r}")
    return number


def boolean(owner: str, arg: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {arg} must be True or False, got {value!r}")
    return value


def choice(owner: str, arg: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{owner}: {arg} must be one of {options}, got {value!r}")
    return value


def sequence(owner: str, arg: str, value: Any) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{owner}: {arg} must be a list, got {value!r}")
    return tuple(value)
