"""Schedules to and from plain data: :func:`from_dict` and :func:`from_spec`.

``to_dict()`` is a method of every schedule (:meth:`Schedule.to_dict
<optimlab.schedules.base.Schedule.to_dict>`); both readers find the class by its spec name in
:data:`~optimlab.schedules.base.SCHEDULES`.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Mapping
from typing import Any

from ..checks import real
from .base import SCHEDULES, Schedule
from .decays import Constant
from .plateau import ReduceOnPlateau


def _lookup(name: Any) -> type:
    if not isinstance(name, str):
        raise TypeError(f"schedule name must be a string, got {name!r}")
    try:
        return SCHEDULES[name]
    except KeyError:
        valid = ", ".join(sorted(SCHEDULES))
        raise ValueError(f"unknown schedule {name!r}; valid names: {valid}") from None


def _construct(cls: type, kwargs: dict[str, Any]) -> Any:
    params = inspect.signature(cls).parameters
    for key in kwargs:
        if key not in params:
            raise TypeError(
                f"{cls.name}: unknown argument {key!r}; valid arguments: {', '.join(params)}"
            )
    for key, p in params.items():
        if p.default is inspect.Parameter.empty and key not in kwargs:
            raise TypeError(f"{cls.name}: missing required argument {key!r}")
    return cls(**kwargs)


def _rebuild(value: Any) -> Any:
    if isinstance(value, Mapping):
        return from_dict(value)
    if isinstance(value, (list, tuple)):
        return [_rebuild(v) for v in value]
    return value


def from_dict(d: Mapping[str, Any]) -> Schedule | ReduceOnPlateau:
    """Rebuild a schedule from ``schedule.to_dict()`` (nested dicts become schedules).

    >>> from_dict({"name": "multistep", "lr": 0.1, "milestones": [30, 80], "gamma": 0.5})
    MultiStep(lr=0.1, milestones=(30, 80), gamma=0.5)
    """
    if not isinstance(d, Mapping):
        raise TypeError(f"from_dict expects a mapping with a 'name' key, got {d!r}")
    if "name" not in d:
        valid = ", ".join(sorted(SCHEDULES))
        raise ValueError(f"from_dict: missing 'name' key in {dict(d)!r}; valid names: {valid}")
    cls = _lookup(d["name"])
    return _construct(cls, {k: _rebuild(v) for k, v in d.items() if k != "name"})


def _parse_number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def _parse_value(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return _parse_number(text)
    except ValueError:
        # Left as a string: either a legitimate choice (anneal=linear) or a typo that the
        # schedule's own check reports with the argument's name.
        return text


def from_spec(spec: str) -> Schedule | ReduceOnPlateau:
    """Parse ``"name:key=value,key=value"`` into a schedule.

    Values are numbers (``0.1``, ``1e-3``, ``1000``), ``true``/``false``, or words for choices
    (``anneal=linear``); list arguments separate items with ``/``
    (``boundaries=1000/2000``). ``join`` and wrapped schedules need :func:`from_dict`.

    >>> from_spec("piecewise_constant:boundaries=1000/2000,values=0.1/0.01/0.001")(1500)
    0.01
    >>> from_spec("one_cycle:max_lr=0.1,total_steps=100,anneal=linear")(29)
    0.1
    """
    if not isinstance(spec, str):
        raise TypeError(f"from_spec expects a string like 'constant:lr=0.1', got {spec!r}")
    name, _, rest = spec.partition(":")
    name = name.strip()
    try:
        cls = _lookup(name)
    except ValueError as e:
        raise ValueError(f"{e} (in spec {spec!r})") from None
    list_args = cls._list_args
    kwargs: dict[str, Any] = {}
    for item in rest.split(","):
        if not item.strip():
            continue
        key, eq, text = item.partition("=")
        key, text = key.strip(), text.strip()
        if not eq or not key:
            raise ValueError(f"{name}: expected key=value, got {item.strip()!r} in spec {spec!r}")
        if key in kwargs:
            raise ValueError(f"{name}: argument {key!r} given twice in spec {spec!r}")
        if key in list_args:
            parts = text.split("/") if text else []
            values = []
            for part in parts:
                try:
                    values.append(_parse_number(part.strip()))
                except ValueError:
                    raise ValueError(
                        f"{name}: {key} item {part.strip()!r} is not a number in spec {spec!r}"
                    ) from None
            kwargs[key] = values
        else:
            kwargs[key] = _parse_value(text)
    try:
        return _construct(cls, kwargs)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{e} (in spec {spec!r})") from None


def as_schedule(owner: str, arg: str, value: Any) -> Callable[[int], float]:
    """Turn a schedule argument into a pure function of the step.

    Accepted: a number (a constant), a schedule of this package, a spec string such as
    ``"exponential_decay:lr=1.0,decay_rate=0.01,decay_steps=1000"``, a ``to_dict()`` mapping, or
    any callable ``f(step) -> float``. The stateful ``ReduceOnPlateau`` is refused: its value
    depends on a metric, not on the step, so a resumed run could not reproduce it.
    """
    if isinstance(value, ReduceOnPlateau):
        raise TypeError(
            f"{owner}: {arg} must be a pure schedule of the step, got the stateful "
            f"{value!r}; use a schedule such as exponential_decay or cosine_decay"
        )
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return Constant(real(owner, arg, value))
    if isinstance(value, str):
        try:
            value = from_spec(value)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{owner}: {arg}: {err}") from None
    elif isinstance(value, Mapping):
        try:
            value = from_dict(value)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{owner}: {arg}: {err}") from None
    if isinstance(value, ReduceOnPlateau):  # it may also come from a spec or a dict
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
