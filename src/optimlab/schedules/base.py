"""The base of the schedules: :class:`Schedule`, the registry, and the checks they share.

A schedule is declared once, by its class::

    @register
    @frozen
    class StepDecay(Schedule):
        # the docstring: a first line that ``optimlab list schedules`` shows, then an example
        name: ClassVar[str] = "step_decay"      # the spec name
        lr: float
        ...

:func:`register` puts the class in :data:`SCHEDULES` under its spec name, which is all that
:func:`~optimlab.schedules.from_dict`, :func:`~optimlab.schedules.from_spec` and
``optimlab list schedules`` read; the package exports the class by its own name and, for a
pure schedule, by its spec name (``step_decay = StepDecay``), and runs its docstring's examples.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any, ClassVar, TypeVar

from .. import checks

#: Every schedule name mapped to its class, in the order of declaration (the order of
#: ``optimlab list schedules``); ``cls.__doc__`` starts with a one-line description.
SCHEDULES: dict[str, type] = {}

_T = TypeVar("_T", bound=type)


def register(cls: _T) -> _T:
    """Class decorator: make ``cls`` the schedule of the spec name ``cls.name``.

    The class needs ``name`` (a Python identifier, so that ``name`` can be its constructor),
    ``to_dict()``, and ``_list_args``: the arguments that are lists, so that
    :func:`~optimlab.schedules.from_spec` reads ``milestones=30`` as ``[30]``.
    """
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        raise TypeError(f"{cls.__qualname__}: a schedule needs a name that is an identifier")
    if name in SCHEDULES:
        raise TypeError(
            f"{cls.__qualname__}: schedule name {name!r} is taken by {SCHEDULES[name].__qualname__}"
        )
    SCHEDULES[name] = cls
    return cls


def exports() -> dict[str, type]:
    """The names under which :mod:`optimlab.schedules` offers the registered schedules.

    Every class by its own name and, for the pure ones, by its spec name too: the documented
    constructors (``step_decay = StepDecay``), so that schedules read like functions of their
    arguments.
    """
    names: dict[str, type] = {}
    for name, cls in SCHEDULES.items():
        names[cls.__name__] = cls
        if issubclass(cls, Schedule):
            names[name] = cls
    return names


# ---------------------------------------------------------------------------------------------
# argument checks (optimlab.checks): every message names the schedule, the argument, the allowed
# range and the value, so a bad config line can be fixed without reading this file.


def increasing_ints(owner: str, arg: str, value: Any, low: int) -> tuple[int, ...]:
    raw = checks.sequence(owner, arg, value)
    items = tuple(checks.integer(owner, f"{arg}[{i}]", v, low) for i, v in enumerate(raw))
    if any(items[i + 1] <= items[i] for i in range(len(items) - 1)):
        raise ValueError(f"{owner}: {arg} must be strictly increasing, got {list(items)}")
    return items


def check_step(owner: str, step: Any) -> int:
    # operator.index admits numpy and 0-d torch integers but refuses floats, even 3.0, because a
    # fractional step is almost always a bug (an epoch fraction passed where a step was meant).
    if isinstance(step, bool):
        raise TypeError(f"{owner}: step must be a non-negative integer, got {step!r}")
    try:
        t = operator.index(step)
    except TypeError:
        raise TypeError(f"{owner}: step must be a non-negative integer, got {step!r}") from None
    if t < 0:
        raise ValueError(f"{owner}: step must be a non-negative integer, got {step!r}")
    return t


def _plain(value: Any) -> Any:
    if isinstance(value, Schedule):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# the base of the pure schedules


class Schedule:
    """Base of the pure schedules: ``schedule(step) -> float`` for an integer ``step >= 0``.

    Subclasses are frozen dataclasses whose fields are the constructor arguments; they
    implement ``_lr(t)`` and get step checking, float conversion and ``to_dict`` from here.
    """

    name: ClassVar[str] = ""
    # Arguments that are lists, so that from_spec reads "milestones=30" as [30], not 30.
    _list_args: ClassVar[tuple[str, ...]] = ()

    def __call__(self, step: int) -> float:
        return float(self._lr(check_step(self.name, step)))

    def _lr(self, t: int) -> float:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"name": ..., **arguments}`` of plain Python values (lists, not tuples)."""
        args = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        return {"name": self.name, **args}


#: The decorator that makes a pure schedule's class a frozen dataclass.
frozen = dataclasses.dataclass(frozen=True)


def set_fields(obj: Any, **values: Any) -> None:
    # Frozen dataclasses refuse normal assignment; normalizing arguments in __post_init__
    # (float(lr), tuple(milestones)) is the one sanctioned use of object.__setattr__.
    for key, value in values.items():
        object.__setattr__(obj, key, value)
