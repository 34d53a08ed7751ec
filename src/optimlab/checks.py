"""Argument checks for the functional parts (schedules, escape remedies, plans, ...).

Every message names the owner, the argument, the allowed range and the value, so a bad config
line can be fixed without reading the code: ``"step_decay: step_size must be an integer >= 1,
got 0"``. The mini-batch plans (:mod:`optimlab.data`) leave the owner out (``"batch_size must
be a positive int or None, got 0"``), and the training loop's counts speak torch's words
(:func:`positive_count`), as optimizer hyperparameters do (``"Invalid momentum value: -1.0;
..."``, in :mod:`optimlab.optim`).

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

import numpy as np


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


# ---------------------------------------------------------------------------------------------
# ints in the words of the mini-batch plans ("batch_size must be a positive int or None, got 0";
# an empty owner leaves the owner out) and of the training loop (torch's words)


def is_index(value: Any) -> bool:
    """Whether ``value`` is an integer as ``operator.index`` sees one: Python, NumPy or 0-d torch,
    never a float (even 3.0) nor a bool (``True`` passed as a size is almost surely a mistake)."""
    if isinstance(value, (bool, np.bool_)):
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def index(
    owner: str,
    arg: str,
    value: Any,
    low: int | None = None,
    *,
    optional: bool = False,
    not_int: type[Exception] = TypeError,
) -> int | None:
    """An integer (:func:`is_index`) ``>= low`` (any when ``low`` is None), as an ``int``; or
    None when ``optional``. A value that is no integer raises ``not_int``, one below ``low``
    ``ValueError``, both saying "an int", "a non-negative int" (``low=0``) or "a positive int"
    (``low=1``), "or None" when optional.

    >>> index("", "batch_size", 0, 1, optional=True)
    Traceback (most recent call last):
    ...
    ValueError: batch_size must be a positive int or None, got 0
    """
    if value is None and optional:
        return None
    words = {None: "an int", 0: "a non-negative int", 1: "a positive int"}.get(low)
    words = (words or f"an int >= {low}") + (" or None" if optional else "")
    message = f"{owner + ': ' if owner else ''}{arg} must be {words}, got {value!r}"
    if not is_index(value):
        raise not_int(message)
    number = operator.index(value)
    if low is not None and number < low:
        raise ValueError(message)
    return number


def below(owner: str, arg: str, value: int, bound_arg: str, bound: int) -> int:
    """An int ``value`` in ``[0, bound)``, ``bound`` being the value of the argument
    ``bound_arg``: "rank must be in [0, world_size=2), got 2"."""
    if not 0 <= value < bound:
        prefix = f"{owner}: " if owner else ""
        raise ValueError(f"{prefix}{arg} must be in [0, {bound_arg}={bound}), got {value!r}")
    return value


def flag(owner: str, arg: str, value: Any) -> bool:
    """True or False, a NumPy bool too, as a ``bool``: "shuffle must be a bool, got 'yes'"."""
    if not isinstance(value, (bool, np.bool_)):
        prefix = f"{owner}: " if owner else ""
        raise TypeError(f"{prefix}{arg} must be a bool, got {value!r}")
    return bool(value)


def positive_count(arg: str, value: Any, *, optional: bool = False) -> int | None:
    """An ``int >= 1`` (a Python int, not a bool), or None when ``optional``, in torch's words as
    the training loop's other arguments: every refusal is a ``ValueError`` such as
    "Invalid epochs: 0; expected an int >= 1"."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Invalid {arg}: {value!r}; expected an int >= 1")
    return value


def seed(owner: str, value: Any) -> int:
    """A seed: an integer in [0, 2**63)."""
    v = integer(owner, "seed", value, 0)
    if v >= 2**63:
        raise ValueError(f"{owner}: seed must be an integer in [0, 2**63), got {value!r}")
    return v
