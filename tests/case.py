"""The :class:`Case` record of the test registry (see ``registry.py``), shared by its families."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Case:
    id: str
    cls: type
    kwargs: dict[str, Any]
    #: the torch.optim class and arguments with the same update rule, where one exists
    torch_twin: tuple[type, dict[str, Any]] | None = None
    #: reference(w0, grad, lrs) -> points where the gradient is evaluated, from references.py
    reference: Callable[..., Any] | None = None
    #: the reference holds only for a constant learning rate
    constant_lr_only: bool = False
    #: (lr, steps): reaches the minimum of 0.5*(x^2 + 100 y^2) from (1, 1) within `steps`
    quadratic: tuple[float, int] = (1e-2, 2000)
    #: (lr, steps): reaches (1, 1) on Rosenbrock from (-1.2, 1) within `steps`
    rosenbrock: tuple[float, int] = (1e-3, 20000)
    tags: frozenset[str] = field(default_factory=frozenset)

    def make(self, params, lr=None, **extra):
        kwargs = dict(self.kwargs, **extra)
        if lr is not None:
            kwargs["lr"] = lr
        return self.cls(params, **kwargs)

    def __str__(self) -> str:
        return self.id


def twin(cls, **kwargs):
    return (cls, kwargs)


def accepted_arguments(cls: type) -> set[str]:
    """The keyword arguments an optimizer class takes (following ``**kwargs`` to its bases)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = list(inspect.signature(klass.__init__).parameters.values())[2:]
        names |= {p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return names
