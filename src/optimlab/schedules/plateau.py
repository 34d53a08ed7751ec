"""The one stateful schedule: :class:`ReduceOnPlateau`, driven by a metric."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any, ClassVar

from .. import checks
from .base import check_step, register


@register
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
        check_step(self.name, step)
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
