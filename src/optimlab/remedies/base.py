"""What every remedy wrapper shares: it holds an optimizer and behaves like one.

A wrapper is used where the optimizer was (``zero_grad()``, ``step(closure)``,
``param_groups``, ``state_dict()``); anything else it is asked for comes from the optimizer it
holds, so wrappers nest: ``Annealing(GradientNoise(optimlab.Adam(...)), ...)``. Its
``state_dict()`` is ``{"optimizer": <the inner optimizer's state_dict>, <key>: <its own>}``, so
one call saves and one call restores the whole stack, and it loads with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor


class OptimizerWrapper:
    """Base of :class:`GradientNoise` and :class:`Annealing`: delegation and nested state.

    Subclasses set :attr:`state_key` and implement ``step``, ``_own_state``,
    ``_check_own_state`` and ``_load_own_state``. Learning-rate schedules drive the inner optimizer
    (``schedules.drive(wrapper.optimizer, ...)``), which is a real ``torch.optim.Optimizer``.
    """

    #: the key of this wrapper's own state in ``state_dict()``
    state_key = ""

    def __init__(self, optimizer: Any) -> None:
        owner = type(self).__name__
        needed = ("step", "zero_grad", "param_groups", "state_dict", "load_state_dict")
        missing = [name for name in needed if not hasattr(optimizer, name)]
        if missing:
            raise TypeError(
                f"{owner}: optimizer must be a torch.optim.Optimizer or an escape wrapper, got "
                f"{type(optimizer).__name__} (it lacks {', '.join(missing)})"
            )
        self.optimizer = optimizer

    # -- what an optimizer offers ---------------------------------------------------------------

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def __getattr__(self, name: str) -> Any:
        # Only called for what this object lacks (state, defaults, add_param_group, ...). The
        # inner optimizer is read from __dict__ so that a half-built object (while unpickling)
        # raises AttributeError instead of recursing.
        try:
            inner = self.__dict__["optimizer"]
        except KeyError:
            raise AttributeError(name) from None
        return getattr(inner, name)

    def params(self) -> Iterator[Tensor]:
        """Every parameter of every group, in order (the order noise is drawn in)."""
        for group in self.param_groups:
            yield from group["params"]

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        raise NotImplementedError

    # -- saving and loading ---------------------------------------------------------------------

    def _own_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _load_own_state(self, state: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """``{"optimizer": inner state, state_key: own state}``; plain ints, floats and tensors."""
        return {"optimizer": self.optimizer.state_dict(), self.state_key: self._own_state()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the inner optimizer and this wrapper from :meth:`state_dict`."""
        owner = type(self).__name__
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"{owner}: state_dict must be a mapping, got {state_dict!r}")
        expected = {"optimizer", self.state_key}
        if set(state_dict) != expected:
            raise ValueError(
                f"{owner}: state_dict must have the keys {sorted(expected)}, got "
                f"{sorted(map(str, state_dict))} (was it saved by another wrapper?)"
            )
        own = state_dict[self.state_key]
        if not isinstance(own, Mapping):
            raise TypeError(f"{owner}: state_dict[{self.state_key!r}] must be a dict, got {own!r}")
        # Checked before anything is changed, so a bad dict leaves this wrapper as it was.
        self._check_own_state(own)
        self.optimizer.load_state_dict(state_dict["optimizer"])
        self._load_own_state(own)

    def _check_own_state(self, state: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        inner = "\n".join("  " + line for line in repr(self.optimizer).splitlines())
        return f"{type(self).__name__}({self._describe()}) around\n{inner}"

    def _describe(self) -> str:
        return ""


def check_int_entries(owner: str, state: Mapping[str, Any], names: tuple[str, ...]) -> None:
    """Each of ``names`` is in ``state`` and holds an int >= 0."""
    for name in names:
        if name not in state:
            raise ValueError(f"{owner}: state is missing the entry {name!r}")
        value = state[name]
        if isinstance(value, Tensor) and value.numel() == 1 and not value.is_floating_point():
            value = int(value.item())
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{owner}: state[{name!r}] must be an int >= 0, got {value!r}")


def check_generator_state(owner: str, state: Mapping[str, Any], generator: torch.Generator) -> None:
    """``state["generator"]`` is a byte tensor of the size this generator's state has."""
    value = state.get("generator")
    reference = generator.get_state()
    if (
        not isinstance(value, Tensor)
        or value.dtype != torch.uint8
        or value.shape != reference.shape
    ):
        found = (
            f"a {value.dtype} tensor of shape {tuple(value.shape)}"
            if isinstance(value, Tensor)
            else repr(value)
        )
        raise ValueError(
            f"{owner}: state['generator'] must be a uint8 tensor of shape "
            f"{tuple(reference.shape)} (a {generator.device} generator's state), got {found}"
        )


def derive_seed(seed: int, *keys: int) -> int:
    """A seed for one purpose of a run, independent of the seeds for its other purposes.

    Two generators seeded with the same integer give the same stream, so a run that draws its
    start point, its batches and its noise from ``seed`` alike would correlate them; a
    ``SeedSequence`` hash of ``(seed, *keys)`` separates them.
    """
    state = np.random.SeedSequence([seed, *keys]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])  # < 2**63, so torch.manual_seed takes it
