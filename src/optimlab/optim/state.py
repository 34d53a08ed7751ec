"""``optimizer.state``, as a map that counts its changes (what a fused plan watches), and the
step count each parameter's state keeps, as torch.optim keeps it."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch import Tensor


class StateMap(defaultdict):
    """``optimizer.state``: a ``defaultdict(dict)`` that counts changes to its entries.

    Replacing a parameter's state dict (``optimizer.state[p] = {...}``), adding or removing one,
    bumps :attr:`version`, which lets a fused plan see in O(1) that the dicts it holds are still
    the optimizer's. It pickles and copies as a plain ``defaultdict(dict)`` would.
    """

    def __init__(self, items: Any = ()) -> None:
        super().__init__(dict, items)
        self.version = 0

    def __setitem__(self, key: Any, value: Any) -> None:
        self.version += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        self.version += 1
        super().__delitem__(key)

    def clear(self) -> None:
        self.version += 1
        super().clear()

    def pop(self, *args: Any) -> Any:
        self.version += 1
        return super().pop(*args)

    def popitem(self) -> Any:
        self.version += 1
        return super().popitem()

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self.version += 1
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.version += 1
        super().update(*args, **kwargs)

    def __ior__(self, other: Any) -> StateMap:
        self.update(other)
        return self

    def __reduce__(self) -> Any:
        return (StateMap, (), None, None, iter(self.items()))


# --- the step count --------------------------------------------------------------------------
# torch.optim keeps each parameter's step count as a 0-dim tensor, not an int: float32 on the
# CPU (float64 where the default dtype is float64; torch.optim.optimizer._get_scalar_dtype),
# so a checkpoint moves between torch and optimlab either way and torch's update advances it.
# optimlab keeps it the same way; the rules take the count as an int, read from it.


def step_dtype() -> torch.dtype:
    """The dtype torch.optim keeps step counts in: float64 if that is the default dtype, else
    float32 (exact up to 2**24 steps, as torch's)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def new_step(count: float = 0) -> Tensor:
    """A step count as torch.optim keeps it: a 0-dim CPU tensor of :func:`step_dtype`.

    >>> new_step(3)
    tensor(3.)
    """
    return torch.tensor(float(count), dtype=step_dtype())


def step_count(state: dict[str, Any]) -> int:
    """The step count of a parameter's ``state``, as an int (a tensor or, in states saved by
    optimlab before 0.4 or set by hand, an int)."""
    step = state["step"]
    return int(step.item()) if isinstance(step, Tensor) else int(step)


def advance_step(state: dict[str, Any]) -> int:
    """Add one to ``state["step"]`` in place (made a tensor first if it is not one) and return
    the new count as an int."""
    step = state["step"]
    if not isinstance(step, Tensor):
        step = state["step"] = new_step(step)
    step += 1
    return int(step.item())
