"""``optimizer.state``, as a map that counts its changes (what a fused plan watches)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any


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
