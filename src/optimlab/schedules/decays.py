"""The decays: schedules that start at ``lr`` and only go down (or stay).

``constant``, ``step_decay``, ``multistep``, ``exponential_decay``, ``inverse_time_decay``,
``piecewise_constant``, ``polynomial_decay`` and ``cosine_decay``; each class is one declaration
(see :mod:`optimlab.schedules.base`).
"""

from __future__ import annotations

import bisect
import math
from typing import ClassVar

from .. import checks
from .base import Schedule, frozen, increasing_ints, register, set_fields


@register
@frozen
class Constant(Schedule):
    """Constant learning rate: ``lr`` at every step.

    >>> constant(0.1)(0), constant(0.1)(10**9)
    (0.1, 0.1)
    """

    name: ClassVar[str] = "constant"
    lr: float

    def __post_init__(self) -> None:
        set_fields(self, lr=checks.real(self.name, "lr", self.lr))

    def _lr(self, t: int) -> float:
        return self.lr


@register
@frozen
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
        set_fields(
            self,
            lr=checks.real(n, "lr", self.lr),
            gamma=checks.real(n, "gamma", self.gamma, 0.0, low_open=True, high=1.0),
            step_size=checks.integer(n, "step_size", self.step_size, 1),
        )

    def _lr(self, t: int) -> float:
        return self.lr * self.gamma ** (t // self.step_size)


@register
@frozen
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
        set_fields(
            self,
            lr=checks.real(n, "lr", self.lr),
            milestones=increasing_ints(n, "milestones", self.milestones, 0),
            gamma=checks.real(n, "gamma", self.gamma, 0.0, low_open=True, high=1.0),
        )

    def _lr(self, t: int) -> float:
        return self.lr * self.gamma ** bisect.bisect_right(self.milestones, t)


@register
@frozen
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
        set_fields(
            self,
            lr=checks.real(n, "lr", self.lr),
            decay_rate=checks.real(n, "decay_rate", self.decay_rate, 0.0, low_open=True, high=1.0),
            decay_steps=checks.integer(n, "decay_steps", self.decay_steps, 1),
            staircase=checks.boolean(n, "staircase", self.staircase),
        )

    def _lr(self, t: int) -> float:
        exponent = t // self.decay_steps if self.staircase else t / self.decay_steps
        return self.lr * self.decay_rate**exponent


@register
@frozen
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
        set_fields(
            self,
            lr=checks.real(n, "lr", self.lr),
            decay_steps=checks.integer(n, "decay_steps", self.decay_steps, 1),
            decay_rate=checks.real(n, "decay_rate", self.decay_rate),
            staircase=checks.boolean(n, "staircase", self.staircase),
        )

    def _lr(self, t: int) -> float:
        ratio = t // self.decay_steps if self.staircase else t / self.decay_steps
        return self.lr / (1.0 + self.decay_rate * ratio)


@register
@frozen
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
        boundaries = increasing_ints(n, "boundaries", self.boundaries, 0)
        values = tuple(
            checks.real(n, f"values[{i}]", v)
            for i, v in enumerate(checks.sequence(n, "values", self.values))
        )
        if len(values) != len(boundaries) + 1:
            raise ValueError(
                f"{n}: values must have len(boundaries) + 1 = {len(boundaries) + 1} entries, "
                f"got {len(values)} (boundaries={list(boundaries)}, values={list(values)})"
            )
        set_fields(self, boundaries=boundaries, values=values)

    def _lr(self, t: int) -> float:
        # bisect_left because t == boundary still belongs to the earlier value (Keras).
        return self.values[bisect.bisect_left(self.boundaries, t)]


@register
@frozen
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
        set_fields(
            self,
            lr=checks.real(n, "lr", self.lr),
            decay_steps=checks.integer(n, "decay_steps", self.decay_steps, 1),
            end_lr=checks.real(n, "end_lr", self.end_lr),
            power=checks.real(n, "power", self.power, 0.0, low_open=True),
        )

    def _lr(self, t: int) -> float:
        frac = 1.0 - min(t, self.decay_steps) / self.decay_steps
        return (self.lr - self.end_lr) * frac**self.power + self.end_lr


@register
@frozen
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
        set_fields(
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
