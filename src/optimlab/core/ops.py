"""Elementwise operations over lists of tensors, in two interchangeable backends.

Every update rule in :mod:`optimlab.core.rules` is written once, against the small set of list
operations below. Two backends carry them out:

* :data:`FOREACH` hands each operation to PyTorch's multi-tensor kernels (``torch._foreach_*``),
  one call for the whole list: few Python calls, the default;
* :data:`LOOP` runs the plain per-tensor PyTorch operation on each tensor in turn: the reference
  path, and the one that works for anything a foreach kernel refuses.

Both compute the same elementwise arithmetic in the same order, so an update rule gives bitwise
equal results on either (the tests check this for every optimizer). The fused path provides the
same operations a third time: :class:`optimlab.core.tape.TapeOps` records them, and
:mod:`optimlab.core.native` compiles the recording into one loop whose arithmetic, element by
element, is the expressions these PyTorch calls evaluate.

Scalars may be one Python number for the whole list or a list with one number per tensor (for
example per-parameter bias corrections when parameters have taken different numbers of steps).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

Scalars = float | Sequence[float]


def _per_tensor(scalars: Scalars, n: int) -> Sequence[float]:
    return scalars if isinstance(scalars, Sequence) else [scalars] * n


class LoopOps:
    """Plain PyTorch operations applied to one tensor after another."""

    name = "loop"

    def neg(self, xs: list[Tensor]) -> list[Tensor]:
        return [torch.neg(x) for x in xs]

    def add(self, xs: list[Tensor], ys: list[Tensor], alpha: float = 1.0) -> list[Tensor]:
        return [torch.add(x, y, alpha=alpha) for x, y in zip(xs, ys)]

    def add_(self, xs: list[Tensor], ys: list[Tensor], alpha: float = 1.0) -> None:
        for x, y in zip(xs, ys):
            x.add_(y, alpha=alpha)

    def add_scalar_(self, xs: list[Tensor], scalar: float) -> None:
        for x in xs:
            x.add_(scalar)

    def div(self, xs: list[Tensor], scalar: float) -> list[Tensor]:
        return [torch.div(x, scalar) for x in xs]

    def lerp(self, xs: list[Tensor], ys: list[Tensor], weight: float) -> list[Tensor]:
        return [torch.lerp(x, y, weight) for x, y in zip(xs, ys)]

    def mul_(self, xs: list[Tensor], scalars: Scalars) -> None:
        for x, s in zip(xs, _per_tensor(scalars, len(xs))):
            x.mul_(s)

    def div_(self, xs: list[Tensor], scalars: Scalars) -> None:
        for x, s in zip(xs, _per_tensor(scalars, len(xs))):
            x.div_(s)

    def lerp_(self, xs: list[Tensor], ys: list[Tensor], weight: float) -> None:
        for x, y in zip(xs, ys):
            x.lerp_(y, weight)

    def addcmul_(self, xs: list[Tensor], ys: list[Tensor], zs: list[Tensor], value: float) -> None:
        for x, y, z in zip(xs, ys, zs):
            x.addcmul_(y, z, value=value)

    def addcmul(
        self, xs: list[Tensor], ys: list[Tensor], zs: list[Tensor], value: float
    ) -> list[Tensor]:
        return [torch.addcmul(x, y, z, value=value) for x, y, z in zip(xs, ys, zs)]

    def addcdiv_(
        self, xs: list[Tensor], ys: list[Tensor], zs: list[Tensor], values: Scalars
    ) -> None:
        for x, y, z, v in zip(xs, ys, zs, _per_tensor(values, len(xs))):
            x.addcdiv_(y, z, value=v)

    def sqrt(self, xs: list[Tensor]) -> list[Tensor]:
        return [torch.sqrt(x) for x in xs]

    def sqrt_(self, xs: list[Tensor]) -> None:
        for x in xs:
            x.sqrt_()

    def maximum_(self, xs: list[Tensor], ys: list[Tensor]) -> None:
        for x, y in zip(xs, ys):
            torch.maximum(x, y, out=x)

    def copy_(self, xs: list[Tensor], ys: list[Tensor]) -> None:
        for x, y in zip(xs, ys):
            x.copy_(y)

    def max_abs(self, xs: list[Tensor]) -> list[Tensor]:
        return [torch.linalg.vector_norm(x, float("inf")) for x in xs]


class ForeachOps(LoopOps):
    """The same operations through PyTorch's multi-tensor (``torch._foreach_*``) kernels."""

    name = "foreach"

    def neg(self, xs):
        return list(torch._foreach_neg(xs))

    def add(self, xs, ys, alpha=1.0):
        return list(torch._foreach_add(xs, ys, alpha=alpha))

    def add_(self, xs, ys, alpha=1.0):
        torch._foreach_add_(xs, ys, alpha=alpha)

    def add_scalar_(self, xs, scalar):
        torch._foreach_add_(xs, scalar)

    def div(self, xs, scalar):
        return list(torch._foreach_div(xs, scalar))

    def lerp(self, xs, ys, weight):
        return list(torch._foreach_lerp(xs, ys, weight))

    def mul_(self, xs, scalars):
        torch._foreach_mul_(xs, scalars)

    def div_(self, xs, scalars):
        torch._foreach_div_(xs, scalars)

    def lerp_(self, xs, ys, weight):
        torch._foreach_lerp_(xs, ys, weight)

    def addcmul_(self, xs, ys, zs, value):
        torch._foreach_addcmul_(xs, ys, zs, value)

    def addcmul(self, xs, ys, zs, value):
        return list(torch._foreach_addcmul(xs, ys, zs, value))

    def addcdiv_(self, xs, ys, zs, values):
        torch._foreach_addcdiv_(xs, ys, zs, values)

    def sqrt(self, xs):
        return list(torch._foreach_sqrt(xs))

    def sqrt_(self, xs):
        torch._foreach_sqrt_(xs)

    def maximum_(self, xs, ys):
        torch._foreach_maximum_(xs, ys)

    def copy_(self, xs, ys):
        torch._foreach_copy_(xs, ys)

    def max_abs(self, xs):
        return list(torch._foreach_norm(xs, float("inf")))


LOOP = LoopOps()
FOREACH = ForeachOps()
