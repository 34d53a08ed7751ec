"""Applying schedules to a torch optimizer: :class:`ScheduleDriver`, made by :func:`drive`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import checks
from .base import check_step


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
        self._step = check_step("drive", step)
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
        self._step = check_step("drive", state["step"])
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
