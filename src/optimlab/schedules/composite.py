"""Schedules made of phases: a warm-up, warm restarts, the 1cycle policy, and ``join``.

Each class is one declaration (see :mod:`optimlab.schedules.base`).
"""

from __future__ import annotations

import bisect
import math
from typing import ClassVar

from .. import checks
from .base import Schedule, frozen, increasing_ints, register, set_fields


@register
@frozen
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
        set_fields(
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


@register
@frozen
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
        set_fields(
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


@register
@frozen
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
        set_fields(
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


@register
@frozen
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
        boundaries = increasing_ints(n, "boundaries", self.boundaries, 1)
        if len(boundaries) != len(schedules) - 1:
            raise ValueError(
                f"{n}: boundaries must have len(schedules) - 1 = {len(schedules) - 1} entries, "
                f"got {len(boundaries)} (boundaries={list(boundaries)})"
            )
        set_fields(self, schedules=schedules, boundaries=boundaries)

    def _lr(self, t: int) -> float:
        i = bisect.bisect_right(self.boundaries, t)
        offset = self.boundaries[i - 1] if i else 0
        return self.schedules[i](t - offset)
