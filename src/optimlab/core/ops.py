"""Elementwise operations over lists of tensors, in two interchangeable backends.

Every update rule in :mod:`optimlab.core.rules` is written once, against the small set of list
operations below. Two backends carry them out:

* :data:`FOREACH` hands each operation to PyTorch's multi-tensor kernels (``torch._foreach_*``),
  one call for the whole list: few Python calls, the default;
* :data:`LOOP` runs the plain per-tensor PyTorch operation on each tensor in turn: the reference
  path, and the one that works for anything a foreach kernel refuses.

Both compute the same elementwise arithmetic in the same order, so an update rule gives bitwise
equal results on either (the tests check this for every optimizer). The fused path provides the
same operations a third time: :class:`optimlab.fused.tape.TapeOps` records them, and
:mod:`optimlab.fused.native` compiles the recording into one loop whose arithmetic, element by
element, is the expressions these PyTorch calls evaluate.

Scalars may be one Python number for the whole list or a list with one number per tensor (for
example per-parameter bias corrections when parameters have taken different numbers of steps).

Parameters sharded by FSDP2 (``DTensor``) take the same operations: DTensor runs each on every
rank's shard, per tensor where it has no multi-tensor strategy (``copy_``). A reduction over a
sharded tensor holds each rank's part until :func:`floats` or :func:`whole` completes it, so
per-tensor norms (LAMB, LARS, Adafactor) and sums (Prodigy) are those of whole parameters.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

Scalars = float | Sequence[float]
#: a scalar, one scalar per tensor, or a list of tensors (elementwise)
Operands = float | Sequence[float] | Sequence[Tensor]


def _per_tensor(scalars: Operands, n: int) -> Sequence[Any]:
    return scalars if isinstance(scalars, Sequence) else [scalars] * n


def is_sharded(tensor: Tensor) -> bool:
    """Whether ``tensor`` is a ``DTensor`` (as FSDP2 makes parameters, their gradients and
    their state), without importing ``torch.distributed.tensor``: whoever made one did."""
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(tensor, module.DTensor)


def whole(tensor: Tensor) -> Tensor:
    """``tensor``; or, for a ``DTensor`` holding each rank's part of a reduction over a sharded
    dimension (a norm or mean of FSDP2's rows, say), the reduction completed across the ranks
    and replicated on each."""
    if not is_sharded(tensor) or not any(p.is_partial() for p in tensor.placements):
        return tensor
    from torch.distributed.tensor import Replicate

    placements = [Replicate() if p.is_partial() else p for p in tensor.placements]
    return tensor.redistribute(placements=placements)


def floats(tensors: Sequence[Tensor]) -> list[float]:
    """0-d tensors as Python floats, with one device synchronization for the whole list.

    A reduction of a sharded tensor (a ``DTensor``: FSDP2's parameters) holds each rank's
    part of the result (a partial sum, or norm); it is completed across the ranks first, one
    collective for all those sharded alike, so every rank reads the value of the whole tensor,
    the one a single process computes (up to the order of the additions).
    """
    if not tensors:
        return []
    values = list(tensors)
    alike: dict[tuple[Any, ...], list[int]] = {}
    for i, t in enumerate(tensors):
        if is_sharded(t):
            alike.setdefault((t.device_mesh, t.placements), []).append(i)
    for indices in alike.values():
        completed = torch.stack([tensors[i] for i in indices]).full_tensor()
        for i, value in zip(indices, completed):
            values[i] = value
    return torch.stack(values).tolist()


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

    def mul_(self, xs: list[Tensor], others: Operands) -> None:
        for x, s in zip(xs, _per_tensor(others, len(xs))):
            x.mul_(s)

    def mul(self, xs: list[Tensor], others: Operands) -> list[Tensor]:
        return [torch.mul(x, s) for x, s in zip(xs, _per_tensor(others, len(xs)))]

    def div_(self, xs: list[Tensor], others: Operands) -> None:
        for x, s in zip(xs, _per_tensor(others, len(xs))):
            x.div_(s)

    def add_scalar(self, xs: list[Tensor], scalar: float) -> list[Tensor]:
        return [torch.add(x, scalar) for x in xs]

    def abs(self, xs: list[Tensor]) -> list[Tensor]:
        return [torch.abs(x) for x in xs]

    def sign(self, xs: list[Tensor]) -> list[Tensor]:
        return [torch.sign(x) for x in xs]

    def sign_(self, xs: list[Tensor]) -> None:
        for x in xs:
            x.sign_()

    def reciprocal_(self, xs: list[Tensor]) -> None:
        for x in xs:
            x.reciprocal_()

    def rsqrt_(self, xs: list[Tensor]) -> None:
        # its own operation: 1 / sqrt(x) rounds twice and can differ from it in the last bit
        for x in xs:
            x.rsqrt_()

    def maximum(self, xs: list[Tensor], ys: list[Tensor]) -> list[Tensor]:
        return [torch.maximum(x, y) for x, y in zip(xs, ys)]

    def clamp_(self, xs: list[Tensor], low: float, high: float) -> None:
        for x in xs:
            x.clamp_(low, high)

    def sign_select(
        self, xs: list[Tensor], positive: float, negative: float, zero: float
    ) -> list[Tensor]:
        """New tensors holding ``positive`` where x > 0, ``negative`` where x < 0, else ``zero``."""
        out = []
        for x in xs:
            y = torch.full_like(x, zero)
            y.masked_fill_(x > 0, positive)
            y.masked_fill_(x < 0, negative)
            out.append(y)
        return out

    def norm(self, xs: list[Tensor]) -> list[Tensor]:
        """Each tensor's 2-norm, as a 0-d tensor (a reduction: never on the fused path)."""
        return [torch.linalg.vector_norm(x) for x in xs]

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

    def mul_(self, xs, others):
        torch._foreach_mul_(xs, others)

    def mul(self, xs, others):
        return list(torch._foreach_mul(xs, others))

    def div_(self, xs, others):
        torch._foreach_div_(xs, others)

    def add_scalar(self, xs, scalar):
        return list(torch._foreach_add(xs, scalar))

    def abs(self, xs):
        return list(torch._foreach_abs(xs))

    def sign(self, xs):
        return list(torch._foreach_sign(xs))

    def sign_(self, xs):
        torch._foreach_sign_(xs)

    def reciprocal_(self, xs):
        torch._foreach_reciprocal_(xs)

    def rsqrt_(self, xs):
        torch._foreach_rsqrt_(xs)

    def maximum(self, xs, ys):
        return list(torch._foreach_maximum(xs, ys))

    def clamp_(self, xs, low, high):
        torch._foreach_clamp_min_(xs, low)
        torch._foreach_clamp_max_(xs, high)

    def norm(self, xs):
        return list(torch._foreach_norm(xs, 2))

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
        if xs and is_sharded(xs[0]):  # no sharding strategy for DTensor (torch 2.13): per tensor
            super().copy_(xs, ys)
        else:
            torch._foreach_copy_(xs, ys)

    def max_abs(self, xs):
        return list(torch._foreach_norm(xs, float("inf")))


class DifferentiableOps(LoopOps):
    """The per-tensor operations with autograd through them (``differentiable=True``): the same
    values as :class:`LoopOps`, computed so that no tensor an operation saved for its backward
    pass is changed in place later (autograd would refuse the backward): results a backward
    needs (a square root's, a reciprocal's) are kept apart from the tensors a rule goes on to
    change, and nothing is written through ``out=``."""

    name = "differentiable"

    def sqrt(self, xs):
        return [torch.sqrt(x).clone() for x in xs]

    def sqrt_(self, xs):
        for x in xs:
            x.copy_(torch.sqrt(x))

    def rsqrt_(self, xs):
        for x in xs:
            x.copy_(torch.rsqrt(x))

    def reciprocal_(self, xs):
        for x in xs:
            x.copy_(torch.reciprocal(x))

    def maximum_(self, xs, ys):
        for x, y in zip(xs, ys):
            x.copy_(torch.maximum(x.clone(), y))  # the maximum's backward keeps its inputs


class ComplexSums:
    """``ops`` computing as PyTorch does on complex tensors, for a rule torch runs on complex
    numbers rather than on their pairs of reals (SGD's).

    The tensors are the pairs of reals all the same; every operation gives the same bits on
    them, except a scaled sum ``x + alpha * y``: on real tensors PyTorch fuses it (one
    rounding), on complex ones it computes the complex product ``alpha * y`` first, rounded,
    then the sum. So here it is a product, then a sum (which the fused path records as two
    operations too, and so rounds twice).

    >>> x, y = torch.tensor([1.0]), torch.tensor([1.0 + 2.0**-23])
    >>> ComplexSums(LOOP).add([x], [y], alpha=1.0 - 2.0**-23)[0] == x + y * (1.0 - 2.0**-23)
    tensor([True])
    """

    def __init__(self, ops: Any) -> None:
        self.ops = ops

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ops, name)

    def add(self, xs: Any, ys: Any, alpha: Any = 1.0) -> Any:
        if isinstance(alpha, float) and alpha == 1.0:
            return self.ops.add(xs, ys)
        return self.ops.add(xs, self.ops.mul(ys, alpha))

    def add_(self, xs: Any, ys: Any, alpha: Any = 1.0) -> None:
        if isinstance(alpha, float) and alpha == 1.0:
            self.ops.add_(xs, ys)
        else:
            self.ops.add_(xs, self.ops.mul(ys, alpha))


LOOP = LoopOps()
FOREACH = ForeachOps()
DIFFERENTIABLE = DifferentiableOps()
