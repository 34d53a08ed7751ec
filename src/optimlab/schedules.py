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
"""

from __future__ import annotations

import bisect
import dataclasses
import inspect
import math
import numbers
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from . import checks

__all__ = [
    "SCHEDULES",
    "Constant",
    "CosineDecay",
    "ExponentialDecay",
    "InverseTimeDecay",
    "Join",
    "LinearWarmup",
    "MultiStep",
    "OneCycle",
    "PiecewiseConstant",
    "PolynomialDecay",
    "ReduceOnPlateau",
    "Schedule",
    "ScheduleDriver",
    "StepDecay",
    "WarmRestarts",
    "constant",
    "cosine_decay",
    "drive",
    "exponential_decay",
    "from_dict",
    "from_spec",
    "inverse_time_decay",
    "join",
    "linear_warmup",
    "multistep",
    "one_cycle",
    "piecewise_constant",
    "polynomial_decay",
    "warm_restarts",
]


# ---------------------------------------------------------------------------------------------
# argument checks (optimlab.checks): every message names the schedule, the argument, the allowed
# range and the value, so a bad config line can be fixed without reading this file.


def _increasing_ints(owner: str, arg: str, value: Any, low: int) -> tuple[int, ...]:
    raw = checks.sequence(owner, arg, value)
    items = tuple(checks.integer(owner, f"{arg}[{i}]", v, low) for i, v in enumerate(raw))
    if any(items[i + 1] <= items[i] for i in range(len(items) - 1)):
        raise ValueError(f"{owner}: {arg} must be strictly increasing, got {list(items)}")
    return items


def _check_step(owner: str, step: Any) -> int:
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
# the schedules


class Schedule:
    """Base of the pure schedules: ``schedule(step) -> float`` for an integer ``step >= 0``.

    Subclasses are frozen dataclasses whose fields are the constructor arguments; they
    implement ``_lr(t)`` and get step checking, float conversion and ``to_dict`` from here.
    """

    name: ClassVar[str] = ""
    # Arguments that are lists, so that from_spec reads "milestones=30" as [30], not 30.
    _list_args: ClassVar[tuple[str, ...]] = ()

    def __call__(self, step: int) -> float:
        return float(self._lr(_check_step(self.name, step)))

    def _lr(self, t: int) -> float:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"name": ..., **arguments}`` of plain Python values (lists, not tuples)."""
        args = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        return {"name": self.name, **args}


_frozen = dataclasses.dataclass(frozen=True)


def _set(obj: Any, **values: Any) -> None:
    # Frozen dataclasses refuse normal assignment; normalizing arguments in __post_init__
    # (float(lr), tuple(milestones)) is the one sanctioned use of object.__setattr__.
    for key, value in values.items():
        object.__setattr__(obj, key, value)


@_frozen
class Constant(Schedule):
    """Constant learning rate: ``lr`` at every step.

    >>> constant(0.1)(0), constant(0.1)(10**9)
    (0.1, 0.1)
    """

    name: ClassVar[str] = "constant"
    lr: float

    def __post_init__(self) -> None:
        _set(self, lr=checks.real(self.name, "lr", self.lr))

    def _lr(self, t: int) -> float:
        return self.lr


@_frozen
class StepDecay(Schedule):
    """Multiply by ``gamma`` every ``step_size`` steps (torch ``StepLR``).

    ``lr * gamma ** (t // step_size)``, with ``0 < gamma <= 1`` and ``step_size >= 1``.

    >>> s = step_decay(0.1, gamma=0.5, step_size=10)
    >>> s(9), s(10), s(20)
    (0.1, 0.05, 0.025)
    """

    name: ClassVar[str] = "step_decay"
    lr: float
    gamma: float
    step_size: int

    def __post_init__(self) -> None:
        n = self.name
        _set(
            self,
            lr=checks.real(n, "lr", self.lr),
            gamma=checks.real(n, "gamma", self.gamma, 0.0, low_open=True, high=1.0),
            step_size=checks.integer(n, "step_size", self.step_size, 1),
        )

    def _lr(self, t: int) -> float:
        return self.lr * self.gamma ** (t // self.step_size)


@_frozen
class MultiStep(Schedule):
    """Multiply by ``gamma`` at each milestone step (torch ``MultiStepLR``).

    ``lr * gamma ** k`` where ``k`` is the number of milestones ``<= t``; milestones are
    strictly increasing integers ``>= 0``.

    >>> s = multistep(1.0, milestones=[3, 5], gamma=0.5)
    >>> [s(t) for t in range(7)]
    [1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    """

    name: ClassVar[str] = "multistep"
    _list_args: ClassVar[tuple[str, ...]] = ("milestones",)
    lr: float
    milestones: tuple[int, ...]
    gamma: float

    def __post_init__(self) -> None:
        n = self.name
        _set(
            self,
            lr=checks.real(n, "lr", self.lr),
            milestones=_increasing_ints(n, "milestones", self.milestones, 0),
            gamma=checks.real(n, "gamma", self.gamma, 0.0, low_open=True, high=1.0),
        )

    def _lr(self, t: int) -> float:
        return self.lr * self.gamma ** bisect.bisect_right(self.milestones, t)


@_frozen
class ExponentialDecay(Schedule):
    """Smooth exponential decay by ``decay_rate`` per ``decay_steps`` (Keras ExponentialDecay).

    ``lr * decay_rate ** (t / decay_steps)``; with ``staircase=True`` the exponent is
    ``t // decay_steps``. ``decay_steps=1`` is torch ``ExponentialLR(gamma=decay_rate)``.

    >>> s = exponential_decay(1.0, decay_rate=0.25, decay_steps=2)
    >>> s(1), s(2), exponential_decay(1.0, 0.25, 2, staircase=True)(3)
    (0.5, 0.25, 0.25)
    """

    name: ClassVar[str] = "exponential_decay"
    lr: float
    decay_rate: float
    decay_steps: int
    staircase: bool = False

    def __post_init__(self) -> None:
        n = self.name
        _set(
            self,
            lr=checks.real(n, "lr", self.lr),
            decay_rate=checks.real(n, "decay_rate", self.decay_rate, 0.0, low_open=True, high=1.0),
            decay_steps=checks.integer(n, "decay_steps", self.decay_steps, 1),
            staircase=checks.boolean(n, "staircase", self.staircase),
        )

    def _lr(self, t: int) -> float:
        exponent = t // self.decay_steps if self.staircase else t / self.decay_steps
        return self.lr * self.decay_rate**exponent


@_frozen
class InverseTimeDecay(Schedule):
    """The 1/t decay: ``lr / (1 + decay_rate * t / decay_steps)`` (Keras InverseTimeDecay).

    With ``staircase=True``, ``t / decay_steps`` is floored.

    >>> s = inverse_time_decay(1.0, decay_steps=10, decay_rate=1.0)
    >>> s(0), s(10), s(30), inverse_time_decay(1.0, 10, staircase=True)(19)
    (1.0, 0.5, 0.25, 0.5)
    """

    name: ClassVar[str] = "inverse_time_decay"
    lr: float
    decay_steps: int
    decay_rate: float = 1.0
    staircase: bool = False

    def __post_init__(self) -> None:
        n = self.name
        _set(
            self,
            lr=checks.real(n, "lr", self.lr),
            decay_steps=checks.integer(n, "decay_steps", self.decay_steps, 1),
            decay_rate=checks.real(n, "decay_rate", self.decay_rate),
            staircase=checks.boolean(n, "staircase", self.staircase),
        )

    def _lr(self, t: int) -> float:
        ratio = t // self.decay_steps if self.staircase else t / self.decay_steps
        return self.lr / (1.0 + self.decay_rate * ratio)


@_frozen
class PiecewiseConstant(Schedule):
    """Absolute values between boundaries (Keras PiecewiseConstantDecay).

    ``values[0]`` while ``t <= boundaries[0]``, ``values[i]`` while
    ``boundaries[i-1] < t <= boundaries[i]``, and ``values[-1]`` after the last boundary;
    ``len(values) == len(boundaries) + 1``. A boundary belongs to the segment *before* it, so
    "0.01 for the first 1000 steps (0..999), then 0.001" is ``boundaries=[999]``.

    >>> s = piecewise_constant(boundaries=[999], values=[0.01, 0.001])
    >>> s(999), s(1000)
    (0.01, 0.001)
    """

    name: ClassVar[str] = "piecewise_constant"
    _list_args: ClassVar[tuple[str, ...]] = ("boundaries", "values")
    boundaries: tuple[int, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        n = self.name
        boundaries = _increasing_ints(n, "boundaries", self.boundaries, 0)
        values = tuple(
            checks.real(n, f"values[{i}]", v)
            for i, v in enumerate(checks.sequence(n, "values", self.values))
        )
        if len(values) != len(boundaries) + 1:
            raise ValueError(
                f"{n}: values must have len(boundaries) + 1 = {len(boundaries) + 1} entries, "
                f"got {len(values)} (boundaries={list(boundaries)}, values={list(values)})"
            )
        _set(self, boundaries=boundaries, values=values)

    def _lr(self, t: int) -> float:
        # bisect_left because t == boundary still belongs to the earlier value (Keras).
        return self.values[bisect.bisect_left(self.boundaries, t)]


@_frozen
class PolynomialDecay(Schedule):
    """Polynomial decay from ``lr`` to ``end_lr`` over ``decay_steps`` (Keras PolynomialDecay).

    ``(lr - end_lr) * (1 - min(t, T) / T) ** power + end_lr`` with ``T = decay_steps``; with
    ``end_lr=0`` this is torch ``PolynomialLR(total_iters=T, power=power)``.

    >>> s = polynomial_decay(1.0, decay_steps=4, end_lr=0.5, power=2.0)
    >>> s(0), s(2), s(4), s(100)
    (1.0, 0.625, 0.5, 0.5)
    """

    name: ClassVar[str] = "polynomial_decay"
    lr: float
    decay_steps: int
    end_lr: float = 0.0
    power: float = 1.0

    def __post_init__(self) -> None:
        n = self.name
        _set(
            self,
            lr=checks.real(n, "lr", self.lr),
            decay_steps=checks.integer(n, "decay_steps", self.decay_steps, 1),
            end_lr=checks.real(n, "end_lr", self.end_lr),
            power=checks.real(n, "power", self.power, 0.0, low_open=True),
        )

    def _lr(self, t: int) -> float:
        frac = 1.0 - min(t, self.decay_steps) / self.decay_steps
        return (self.lr - self.end_lr) * frac**self.power + self.end_lr


@_frozen
class CosineDecay(Schedule):
    """Half-cosine from ``lr`` to ``end_lr`` over ``decay_steps``, then ``end_lr``.

    ``end_lr + (lr - end_lr) * (1 + cos(pi * t / T)) / 2`` for ``t <= T = decay_steps`` and
    ``end_lr`` after: torch ``CosineAnnealingLR(T_max=T, eta_min=end_lr)`` in closed form up to
    ``T`` (torch's cosine rises again after ``T``; this one stays at ``end_lr``).

    >>> s = cosine_decay(1.0, decay_steps=10, end_lr=0.5)
    >>> s(0), s(5), s(10), s(11)
    (1.0, 0.75, 0.5, 0.5)
    """

    name: ClassVar[str] = "cosine_decay"
    lr: float
    decay_steps: int
    end_lr: float = 0.0

    def __post_init__(self) -> None:
        n = self.name
        _set(
            self,
            lr=checks.real(n, "lr", self.lr),
            decay_steps=checks.integer(n, "decay_steps", self.decay_steps, 1),
            end_lr=checks.real(n, "end_lr", self.end_lr),
        )

    def _lr(self, t: int) -> float:
        if t >= self.decay_steps:
            return self.end_lr
        cos = math.cos(math.pi * t / self.decay_steps)
        return self.end_lr + (self.lr - self.end_lr) * (1.0 + cos) / 2.0


@_frozen
class LinearWarmup(Schedule):
    """Linear warm-up into a constant lr or into another schedule.

    With ``W = warmup_steps`` and ``target = inner(W)``, where ``inner`` is ``schedule`` (or
    ``constant(schedule)`` when it is a number)::

        t <  W:  target * (start_factor + (1 - start_factor) * t / W)
        t >= W:  inner(t)

    The ramp ends exactly on ``inner(W)``, so the schedule is continuous at ``W``. The inner
    schedule sees the absolute step; to start it from its own step 0 after the warm-up, use
    ``join([linear_warmup(lr, W), inner], [W])``. Wrapping a number ``lr`` is torch
    ``LinearLR(start_factor, end_factor=1, total_iters=W)``. ``warmup_steps=0`` disables it.

    >>> s = linear_warmup(1.0, warmup_steps=4)
    >>> [s(t) for t in range(6)]
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    >>> s = linear_warmup(step_decay(1.0, 0.5, 2), warmup_steps=2, start_factor=0.5)
    >>> [s(t) for t in range(5)]
    [0.25, 0.375, 0.5, 0.5, 0.25]
    """

    name: ClassVar[str] = "linear_warmup"
    schedule: Schedule | float
    warmup_steps: int
    start_factor: float = 0.0

    def __post_init__(self) -> None:
        n = self.name
        inner = self.schedule
        if not isinstance(inner, Schedule):
            inner = checks.real(n, "schedule", inner)
        _set(
            self,
            schedule=inner,
            warmup_steps=checks.integer(n, "warmup_steps", self.warmup_steps, 0),
            start_factor=checks.real(n, "start_factor", self.start_factor, high=1.0),
        )

    def _inner(self, t: int) -> float:
        s = self.schedule
        return s(t) if isinstance(s, Schedule) else s

    def _lr(self, t: int) -> float:
        w = self.warmup_steps
        if t >= w:
            return self._inner(t)
        return self._inner(w) * (self.start_factor + (1.0 - self.start_factor) * t / w)


@_frozen
class WarmRestarts(Schedule):
    """SGDR: cosine decay restarted each period (torch ``CosineAnnealingWarmRestarts``).

    Periods are ``T_0 = first_period`` and ``T_i = T_0 * period_mult ** i``; with ``t_cur``
    the steps since the start of the current period,
    ``end_lr + (lr - end_lr) * (1 + cos(pi * t_cur / T_i)) / 2``.

    >>> s = warm_restarts(1.0, first_period=2, period_mult=2)
    >>> [round(s(t), 3) for t in range(8)]
    [1.0, 0.5, 1.0, 0.854, 0.5, 0.146, 1.0, 0.962]
    """

    name: ClassVar[str] = "warm_restarts"
    lr: float
    first_period: int
    period_mult: int = 1
    end_lr: float = 0.0

    def __post_init__(self) -> None:
        n = self.name
        _set(
            self,
            lr=checks.real(n, "lr", self.lr),
            first_period=checks.integer(n, "first_period", self.first_period, 1),
            period_mult=checks.integer(n, "period_mult", self.period_mult, 1),
            end_lr=checks.real(n, "end_lr", self.end_lr),
        )

    def _lr(self, t: int) -> float:
        period = self.first_period
        if self.period_mult == 1:
            t_cur = t % period
        else:
            # Integer walk instead of torch's log() formula: exact at restarts, O(log t) steps.
            start = 0
            while t >= start + period:
                start += period
                period *= self.period_mult
            t_cur = t - start
        cos = math.cos(math.pi * t_cur / period)
        return self.end_lr + (self.lr - self.end_lr) * (1.0 + cos) / 2.0


@_frozen
class OneCycle(Schedule):
    """The 1cycle policy (torch ``OneCycleLR``): warm up to ``max_lr``, then anneal far below.

    ``initial = max_lr / div_factor`` and ``final = initial / final_div_factor``. Phases end at
    step ``pct_start * total_steps - 1`` (``initial -> max_lr``) and ``total_steps - 1``
    (``max_lr -> final``); with ``three_phase`` at ``pct_start * total_steps - 1``
    (``initial -> max_lr``), ``2 * pct_start * total_steps - 2`` (``max_lr -> initial``) and
    ``total_steps - 1`` (``initial -> final``). Within a phase from ``a`` to ``b`` the lr is
    ``b + (a - b) * (1 + cos(pi * p)) / 2`` (``anneal="cos"``) or ``a + (b - a) * p``
    (``"linear"``), ``p`` the fraction of the phase done. After ``total_steps - 1`` the lr stays
    at its last value (torch refuses steps past ``total_steps``).

    >>> s = one_cycle(1.0, total_steps=10, pct_start=0.2, div_factor=10.0, final_div_factor=10.0)
    >>> [round(s(t), 4) for t in (0, 1, 5, 9, 50)]
    [0.1, 1.0, 0.505, 0.01, 0.01]
    """

    name: ClassVar[str] = "one_cycle"
    max_lr: float
    total_steps: int
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    anneal: str = "cos"
    three_phase: bool = False

    def __post_init__(self) -> None:
        n = self.name
        _set(
            self,
            max_lr=checks.real(n, "max_lr", self.max_lr),
            total_steps=checks.integer(n, "total_steps", self.total_steps, 1),
            pct_start=checks.real(n, "pct_start", self.pct_start, high=1.0),
            div_factor=checks.real(n, "div_factor", self.div_factor, 0.0, low_open=True),
            final_div_factor=checks.real(
                n, "final_div_factor", self.final_div_factor, 0.0, low_open=True
            ),
            anneal=checks.choice(n, "anneal", self.anneal, ("cos", "linear")),
            three_phase=checks.boolean(n, "three_phase", self.three_phase),
        )
        if float(self.pct_start * self.total_steps) - 1 == 0:
            raise ValueError(
                f"{n}: pct_start * total_steps must not equal 1 (the warm-up phase would span "
                f"zero steps), got pct_start={self.pct_start!r}, total_steps={self.total_steps!r}"
            )

    def _lr(self, t: int) -> float:
        initial = self.max_lr / self.div_factor
        final = initial / self.final_div_factor
        # Same phase ends and same search as torch, so that odd settings (a warm-up shorter
        # than one step, a three-phase pct_start above 0.5) still give torch's numbers.
        warm_end = float(self.pct_start * self.total_steps) - 1
        last = self.total_steps - 1
        if self.three_phase:
            phases = [
                (warm_end, initial, self.max_lr),
                (float(2 * self.pct_start * self.total_steps) - 2, self.max_lr, initial),
                (last, initial, final),
            ]
        else:
            phases = [(warm_end, initial, self.max_lr), (last, self.max_lr, final)]
        t = min(t, last)
        start = 0.0
        for i, (end, a, b) in enumerate(phases):
            if t <= end or i == len(phases) - 1:
                p = (t - start) / (end - start)
                if self.anneal == "cos":
                    return b + (a - b) / 2.0 * (math.cos(math.pi * p) + 1)
                return (b - a) * p + a
            start = end
        raise AssertionError("unreachable: the last phase always matches")


@_frozen
class Join(Schedule):
    """Schedules one after another (optax ``join_schedules``).

    ``schedules[0](t)`` for ``t < boundaries[0]``; then ``schedules[i + 1](t - boundaries[i])``
    for ``boundaries[i] <= t < boundaries[i + 1]``: each schedule counts steps from its own
    start, so at ``t = boundaries[i]`` the value is ``schedules[i + 1](0)``. Boundaries are
    strictly increasing integers ``>= 1``, one fewer than the schedules.

    >>> s = join([linear_warmup(1.0, 2), cosine_decay(1.0, 2)], boundaries=[2])
    >>> [s(t) for t in range(5)]
    [0.0, 0.5, 1.0, 0.5, 0.0]
    """

    name: ClassVar[str] = "join"
    _list_args: ClassVar[tuple[str, ...]] = ("schedules", "boundaries")
    schedules: tuple[Schedule, ...]
    boundaries: tuple[int, ...]

    def __post_init__(self) -> None:
        n = self.name
        schedules = checks.sequence(n, "schedules", self.schedules)
        if not schedules:
            raise ValueError(f"{n}: schedules must hold at least one schedule, got []")
        for i, s in enumerate(schedules):
            if not isinstance(s, Schedule):
                raise TypeError(
                    f"{n}: schedules[{i}] must be a pure schedule (a Schedule), got {s!r}"
                )
        boundaries = _increasing_ints(n, "boundaries", self.boundaries, 1)
        if len(boundaries) != len(schedules) - 1:
            raise ValueError(
                f"{n}: boundaries must have len(schedules) - 1 = {len(schedules) - 1} entries, "
                f"got {len(boundaries)} (boundaries={list(boundaries)})"
            )
        _set(self, schedules=schedules, boundaries=boundaries)

    def _lr(self, t: int) -> float:
        i = bisect.bisect_right(self.boundaries, t)
        offset = self.boundaries[i - 1] if i else 0
        return self.schedules[i](t - offset)


# The documented constructors: schedules read like functions of their arguments.
constant = Constant
step_decay = StepDecay
multistep = MultiStep
exponential_decay = ExponentialDecay
inverse_time_decay = InverseTimeDecay
piecewise_constant = PiecewiseConstant
polynomial_decay = PolynomialDecay
cosine_decay = CosineDecay
linear_warmup = LinearWarmup
warm_restarts = WarmRestarts
one_cycle = OneCycle
join = Join


# ---------------------------------------------------------------------------------------------
# the stateful one


class ReduceOnPlateau:
    """Divide the lr by ``1 / factor`` when a metric stops improving (torch ReduceLROnPlateau).

    Call ``update(metric)`` once per evaluation; it returns the (possibly reduced) lr. A metric
    improves when it beats the best so far by the threshold: ``metric < best * (1 - threshold)``
    (``mode="min"``, ``threshold_mode="rel"``), ``metric < best - threshold`` (``"abs"``), and
    mirrored for ``mode="max"``. After more than ``patience`` updates without improvement the lr
    becomes ``max(lr * factor, min_lr)`` (skipped when that changes it by ``eps`` or less), and
    the next ``cooldown`` updates count no bad updates. These are torch's decisions, step for
    step. ``schedule(step)`` returns the current lr whatever the step; the state (lr, best,
    counters) round-trips through ``state_dict()``/``load_state_dict()``, and ``to_dict()``
    gives only the constructor arguments.

    >>> s = ReduceOnPlateau(1.0, factor=0.5, patience=1)
    >>> [s.update(m) for m in [3.0, 2.0, 2.0, 2.0, 2.0, 1.0]]
    [1.0, 1.0, 1.0, 0.5, 0.5, 0.5]
    >>> s(0)
    0.5
    """

    name: ClassVar[str] = "reduce_on_plateau"
    _list_args: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        lr: float,
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        mode: str = "min",
        cooldown: int = 0,
        min_lr: float = 0.0,
        eps: float = 1e-8,
    ) -> None:
        n = self.name
        self.initial_lr = checks.real(n, "lr", lr)
        self.factor = checks.real(n, "factor", factor, high=1.0, high_open=True)
        self.patience = checks.integer(n, "patience", patience, 0)
        self.threshold = checks.real(n, "threshold", threshold)
        self.threshold_mode = checks.choice(n, "threshold_mode", threshold_mode, ("rel", "abs"))
        self.mode = checks.choice(n, "mode", mode, ("min", "max"))
        self.cooldown = checks.integer(n, "cooldown", cooldown, 0)
        self.min_lr = checks.real(n, "min_lr", min_lr)
        self.eps = checks.real(n, "eps", eps)
        self._current = self.initial_lr
        self._best = math.inf if self.mode == "min" else -math.inf
        self._num_bad = 0
        self._cooldown_left = 0
        self._num_updates = 0

    @property
    def lr(self) -> float:
        """The current learning rate."""
        return self._current

    def __call__(self, step: int) -> float:
        _check_step(self.name, step)
        return self._current

    def _is_better(self, current: float) -> bool:
        best, thr = self._best, self.threshold
        if self.mode == "min":
            return current < (best * (1.0 - thr) if self.threshold_mode == "rel" else best - thr)
        return current > (best * (1.0 + thr) if self.threshold_mode == "rel" else best + thr)

    def update(self, metric: Any) -> float:
        """Record one metric value (a number or 0-d tensor) and return the new lr."""
        try:
            current = float(metric)
        except (TypeError, ValueError):
            raise TypeError(f"{self.name}: metric must be a number, got {metric!r}") from None
        self._num_updates += 1
        # Order of the three blocks follows torch, which the parity test pins down.
        if self._is_better(current):
            self._best = current
            self._num_bad = 0
        else:
            self._num_bad += 1
        if self._cooldown_left > 0:
            self._cooldown_left -= 1
            self._num_bad = 0
        if self._num_bad > self.patience:
            new_lr = max(self._current * self.factor, self.min_lr)
            if self._current - new_lr > self.eps:
                self._current = new_lr
            self._cooldown_left = self.cooldown
            self._num_bad = 0
        return self._current

    _STATE_KEYS: ClassVar[tuple[str, ...]] = (
        "lr",
        "best",
        "num_bad_updates",
        "cooldown_left",
        "num_updates",
    )

    def state_dict(self) -> dict[str, Any]:
        """The mutable state as a plain dict (``best`` may be ``inf`` before the first update)."""
        return {
            "lr": self._current,
            "best": self._best,
            "num_bad_updates": self._num_bad,
            "cooldown_left": self._cooldown_left,
            "num_updates": self._num_updates,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the state written by :meth:`state_dict`."""
        n = self.name
        if not isinstance(state, Mapping):
            raise TypeError(f"{n}: state must be a mapping, got {state!r}")
        missing = [k for k in self._STATE_KEYS if k not in state]
        extra = [k for k in state if k not in self._STATE_KEYS]
        if missing or extra:
            raise ValueError(
                f"{n}: state keys must be {list(self._STATE_KEYS)}, missing {missing}, "
                f"unexpected {extra}"
            )
        best = state["best"]
        if isinstance(best, bool) or not isinstance(best, numbers.Real) or math.isnan(best):
            raise ValueError(f"{n}: state best must be a number, got {best!r}")
        self._current = checks.real(n, "state lr", state["lr"])
        self._best = float(best)
        self._num_bad = checks.integer(n, "state num_bad_updates", state["num_bad_updates"], 0)
        self._cooldown_left = checks.integer(n, "state cooldown_left", state["cooldown_left"], 0)
        self._num_updates = checks.integer(n, "state num_updates", state["num_updates"], 0)

    def to_dict(self) -> dict[str, Any]:
        """Constructor arguments as ``{"name": ..., **arguments}``; the state is separate."""
        return {
            "name": self.name,
            "lr": self.initial_lr,
            "factor": self.factor,
            "patience": self.patience,
            "threshold": self.threshold,
            "threshold_mode": self.threshold_mode,
            "mode": self.mode,
            "cooldown": self.cooldown,
            "min_lr": self.min_lr,
            "eps": self.eps,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "name")
        return f"ReduceOnPlateau({args}; lr now {self._current!r})"


# ---------------------------------------------------------------------------------------------
# registry and serialization

#: Every schedule name mapped to its class; ``cls.__doc__`` starts with a one-line description.
SCHEDULES: dict[str, type] = {
    cls.name: cls
    for cls in (
        Constant,
        StepDecay,
        MultiStep,
        ExponentialDecay,
        InverseTimeDecay,
        PiecewiseConstant,
        PolynomialDecay,
        CosineDecay,
        LinearWarmup,
        WarmRestarts,
        OneCycle,
        Join,
        ReduceOnPlateau,
    )
}


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


# ---------------------------------------------------------------------------------------------
# applying a schedule to a torch optimizer


class ScheduleDriver:
    """Sets ``param_group["lr"]`` of a torch optimizer from schedules, one step at a time.

    Made by :func:`drive`. At construction it applies the lr of ``step``; each ``step()``
    advances the count by one and applies the next lr. The step count is its only state, so
    ``state_dict() == {"step": n}`` and ``load_state_dict`` restores the exact lr, even on a
    freshly built optimizer. ``optimizer.step`` is left untouched.

    ``schedule`` is one schedule for every group, or a list with one per group. With
    ``relative=True`` the schedule's value multiplies each group's initial lr, kept in
    ``group["initial_lr"]`` as torch's schedulers do (set from ``group["lr"]`` when absent),
    so it survives ``optimizer.state_dict()``. Any callable ``(step) -> float`` works, including
    a :class:`ReduceOnPlateau` (call ``apply()`` after its ``update`` to push the new lr).
    """

    def __init__(
        self,
        optimizer: Any,
        schedule: Callable[[int], float] | Sequence[Callable[[int], float]],
        step: int = 0,
        *,
        relative: bool = False,
    ) -> None:
        import torch

        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"drive: optimizer must be a torch.optim.Optimizer, got {optimizer!r}")
        if isinstance(schedule, Sequence) and not isinstance(schedule, str):
            schedules: tuple[Callable[[int], float], ...] | None = tuple(schedule)
            if len(schedule) != len(optimizer.param_groups):
                raise ValueError(
                    f"drive: got {len(schedule)} schedules for "
                    f"{len(optimizer.param_groups)} param groups; give one per group or one"
                )
            candidates = schedules
        else:
            schedules = None
            candidates = (schedule,)
        for s in candidates:
            if not callable(s):
                raise TypeError(f"drive: schedule must be callable as schedule(step), got {s!r}")
        self.optimizer = optimizer
        self._schedule = schedule
        self._schedules = schedules
        self.relative = checks.boolean("drive", "relative", relative)
        self._step = _check_step("drive", step)
        self._last_lr: list[float] = []
        self.apply()

    @property
    def current_step(self) -> int:
        """The step whose lr is applied now."""
        return self._step

    def step(self) -> None:
        """Advance by one step and apply its lr; call it after ``optimizer.step()``."""
        self._step += 1
        self.apply()

    def apply(self) -> list[float]:
        """Set every group's lr for the current step and return them."""
        import torch

        groups = self.optimizer.param_groups
        if self._schedules is not None and len(self._schedules) != len(groups):
            raise ValueError(
                f"drive: {len(self._schedules)} schedules but the optimizer now has "
                f"{len(groups)} param groups"
            )
        lrs = []
        for i, group in enumerate(groups):
            s = self._schedules[i] if self._schedules is not None else self._schedule
            lr = float(s(self._step))
            if self.relative:
                lr *= float(group.setdefault("initial_lr", float(group["lr"])))
            # Tensor lrs (capturable/compiled optimizers) must be updated in place.
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
            lrs.append(lr)
        self._last_lr = lrs
        return list(lrs)

    def get_last_lr(self) -> list[float]:
        """The lrs applied last, one per param group (as torch schedulers' ``get_last_lr``)."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, int]:
        """``{"step": n}``: everything needed to resume."""
        return {"step": self._step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the step count and apply its lr."""
        if not isinstance(state, Mapping) or set(state) != {"step"}:
            raise ValueError(f"drive: state must be {{'step': int}}, got {state!r}")
        self._step = _check_step("drive", state["step"])
        self.apply()

    def __repr__(self) -> str:
        return f"ScheduleDriver(step={self._step}, schedule={self._schedule!r})"


def drive(
    optimizer: Any,
    schedule: Callable[[int], float] | Sequence[Callable[[int], float]],
    step: int = 0,
    *,
    relative: bool = False,
) -> ScheduleDriver:
    """Drive ``optimizer``'s learning rates with ``schedule``; see :class:`ScheduleDriver`.

    >>> import torch
    >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    >>> driver = drive(opt, step_decay(0.1, gamma=0.5, step_size=2))
    >>> for _ in range(3):
    ...     opt.step()
    ...     driver.step()
    >>> opt.param_groups[0]["lr"], driver.state_dict()
    (0.05, {'step': 3})
    """
    return ScheduleDriver(optimizer, schedule, step, relative=relative)
